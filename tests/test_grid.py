"""Grid parsing: every form /work/shared/CLI.md defines (``1,8,64``; ``a..b``; ``a..b:N``;
``a..b:xN``; k/m suffixes with 1k = 1024), each expected list written out by hand from
that definition, and bad grids refused by the command line with one ``error:`` line
and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from perfmodel.errors import PerfmodelError
from perfmodel.grid import MAX_POINTS, parse_grid


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1,8,64", [1, 8, 64]),  # CLI.md: a list
        ("3..7", [3, 4, 5, 6, 7]),  # every integer from a to b, both included
        ("0..10:4", [0, 4, 8]),  # steps of N from a, up to b
        ("1..9:4", [1, 5, 9]),  # b itself when a step lands on it
        ("1k..128k:x2", [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]),  # CLI.md's own example
        ("1k..4k:1k", [1024, 2048, 3072, 4096]),  # suffixes in the step too
        ("1m", [1024 * 1024]),  # 1m = 1024k
        ("0.5k", [512]),
        ("64,1,8,8", [1, 8, 64]),  # sorted, repeats dropped
        ("1,2,4..16:x2", [1, 2, 4, 8, 16]),  # a list may hold ranges
        ("5..5", [5]),
        ("2..20:x3", [2, 6, 18]),  # stops before passing b
        (" 1 , 2 ", [1, 2]),
    ],
)
def test_grid_forms(text, expected):
    assert parse_grid(text, minimum=0) == expected


def test_minimum_applies_to_every_value():
    with pytest.raises(PerfmodelError, match="below the minimum 1"):
        parse_grid("0..4", "batch", minimum=1)
    assert parse_grid("0..2", "context", minimum=0) == [0, 1, 2]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty grid"),
        ("1,,2", "empty item"),
        ("8..1", "reversed range"),
        ("1..8:0", "zero step"),
        ("1..8:x1", "factor must be above 1"),
        ("0..8:x2", "cannot start at 0"),
        ("1..", "not a range"),
        ("1..2..3", "not a range"),
        ("1..8:", "not a range"),
        ("abc", "not a count"),
        (f"1..{MAX_POINTS + 1}", "more than"),
    ],
)
def test_bad_grids(text, message):
    with pytest.raises(PerfmodelError, match=message):
        parse_grid(text, minimum=0)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfmodel", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "option, grid, message",
    [
        ("--batch", "", "empty grid"),
        ("--context", "8k..1k", "reversed range"),
        ("--batch", "1..64:0", "zero step"),
    ],
)
def test_bad_grid_through_the_cli(option, grid, message):
    """The command line turns a bad grid into one ``error:`` line, exit status 2."""
    result = _cli("sweep", "--model", "llama-3-8b", "--metric", "kv_cache_bytes", option, grid)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
