"""Exports: CSV and JSON read back through pandas/json to the same numbers (exact ints
for counts), LaTeX that compiles with booktabs (pdflatex, where installed) or at least
has the booktabs structure, Markdown that a CommonMark+tables parser (markdown-it-py,
where installed) reads as the same table, and an aligned terminal table. Expected
renderings of single numbers are worked out by hand in the test."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import click
import numpy as np
import pandas as pd
import pytest

from perfmodel.cli import cli, main
from perfmodel import api
from perfmodel.export import FORMATS, _cell, plain_cell, render
from perfmodel.options import Options
from perfmodel.presets import load_model
from perfmodel.scenario import Scenario

GPT2 = load_model("gpt2")


def _frames() -> dict[str, pd.DataFrame]:
    """Real query results (big exact ints, floats, strings, bools, None) and an object
    column mixing ints beyond 2**53 with a missing value."""
    from perfmodel.hardware.catalog import get_accelerator

    sc = Scenario(GPT2, Options(phase="decode"), batch=4, context=512, accelerator=get_accelerator("h100"))
    return {
        "params": api.params(load_model("llama-3-8b")),
        "roofline": api.roofline_report(sc, by="operator"),
        "memory": api.memory_report(sc),
        "mixed": pd.DataFrame({"name": ["a", "b_%", "c&d"], "count": pd.Series([1, None, 2**60 + 1], dtype=object), "x": [0.1, 1 / 3, 4.2e-5]}),
    }


@pytest.fixture(scope="module")
def frames():
    return _frames()


@pytest.mark.parametrize("name", ["params", "roofline", "memory", "mixed"])
def test_json_round_trip(frames, name):
    """JSON records hold each cell's value: ints stay exact ints, missing is null."""
    frame = frames[name]
    records = json.loads(render(frame, "json"))
    assert len(records) == len(frame)
    for record, row in zip(records, frame.to_dict("records")):
        assert list(record) == list(frame.columns)
        for column, value in row.items():
            got = record[column]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                assert got is None
            elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
                assert type(got) is int and got == value, column
            elif isinstance(value, float) and np.isinf(value):  # JSON has no infinity
                assert got == ("inf" if value > 0 else "-inf")
            else:
                assert got == value, column
    back = pd.DataFrame(records).replace({"inf": np.inf, "-inf": -np.inf}).infer_objects()
    pd.testing.assert_frame_equal(back.drop(columns="count", errors="ignore"), frame.drop(columns="count", errors="ignore"), check_dtype=False)


@pytest.mark.parametrize("name", ["params", "roofline", "memory"])
def test_csv_round_trip(frames, name):
    """pandas reads the CSV back to equal numbers; int64 count columns stay int64."""
    frame = frames[name]
    back = pd.read_csv(io.StringIO(render(frame, "csv")))
    assert list(back.columns) == list(frame.columns)
    for column in frame.columns:
        if pd.api.types.is_integer_dtype(frame[column]):
            assert back[column].dtype == np.int64, column
        if pd.api.types.is_numeric_dtype(frame[column]):
            assert back[column].tolist() == frame[column].tolist(), column
    assert back["model" if "model" in back else "operator"].tolist() == frame["model" if "model" in frame else "operator"].tolist()
    if name == "params":  # llama-3-8b: 8.03e9 parameters, beyond 2**32, read back exactly
        assert back["total_params"].iloc[0] == frame["total_params"].iloc[0] > 2**32


def test_csv_keeps_huge_ints_exact(frames):
    back = pd.read_csv(io.StringIO(render(frames["mixed"], "csv")), dtype={"count": str})
    assert back["count"].tolist()[2] == str(2**60 + 1)


def _tabular_rows(tex: str) -> list[list[str]]:
    body = tex.split("\\midrule\n", 1)[1].split("\n\\bottomrule", 1)[0]
    return [re.split(r"(?<!\\)&", line.removesuffix(r" \\")) for line in body.splitlines()]


def _compile(tmp_path, *tables: str) -> None:
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[landscape,margin=5mm]{geometry}\n\\begin{document}\n\\tiny\n"
    doc += "\n\n".join(tables) + "\n\\end{document}\n"
    (tmp_path / "doc.tex").write_text(doc)
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "doc.pdf").read_bytes()[:5] == b"%PDF-"


def test_latex_structure(frames):
    """booktabs: \\toprule, \\midrule, \\bottomrule; one column spec per column (numbers
    right-aligned); every row has as many cells; TeX specials escaped."""
    for frame in frames.values():
        tex = render(frame, "latex")
        lines = tex.splitlines()
        spec = re.fullmatch(r"\\begin\{tabular\}\{([lr]+)\}", lines[0])
        assert spec and len(spec[1]) == len(frame.columns)
        assert lines[1] == r"\toprule" and lines[3] == r"\midrule" and lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
        rows = _tabular_rows(tex)
        assert len(rows) == len(frame) and all(len(r) == len(frame.columns) for r in rows)
    mixed = render(frames["mixed"], "latex")
    assert r"b\_\%" in mixed and r"c\&d" in mixed and r"$4.2\times10^{-5}$" in mixed  # a plain number, no SI letter


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_compiles(tmp_path, frames):
    """Every table, and a formula whose expression column is LaTeX math, compile."""
    formula = api.formula("kv_cache_bytes", Scenario(GPT2, Options(phase="decode"), context=512), as_latex=True)
    formula.attrs["latex_columns"] = ["expression"]
    tex = render(formula, "latex")
    assert "$2 B_{kv} L b d_{h} n_{kv} t$" in tex  # math kept, not escaped
    _compile(tmp_path, *(render(f, "latex") for f in frames.values()), tex)


class _Cells(HTMLParser):
    """The text of each <th>/<td> cell and its style, row by row."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        if tag in ("th", "td"):
            self._cell = [tag, dict(attrs).get("style", ""), ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self.rows[-1].append(tuple(self._cell))
            self._cell = None


def test_markdown_is_a_table(frames):
    """A CommonMark + GFM-tables parser sees one header row with the column names and
    one row per frame row, numbers right-aligned."""
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py not installed")
    for name in ("roofline", "mixed"):
        frame = frames[name]
        html = markdown_it.MarkdownIt("commonmark").enable("table").render(render(frame, "markdown"))
        parser = _Cells()
        parser.feed(html)
        head, *body = parser.rows
        assert [c[2] for c in head] == list(frame.columns) and all(c[0] == "th" for c in head)
        assert len(body) == len(frame)
        assert [c[2] for c in body[0]] == [plain_cell(v) for v in frame.iloc[0]]
    numbers = [c[1] for c in head]
    assert numbers == ["", "text-align:right", "text-align:right"]  # name, count, x


@pytest.mark.parametrize(
    "value, text",
    [
        (8030261248, "8,030,261,248"),  # grouped by thousands
        (2.589e11, "258.9 G"),
        (4.2e-5, "42 µ"),
        (0.01479, "0.01479"),
        (999.96, "1 k"),  # rounds to 1000: the next prefix
        (12.345678, "12.35"),
        (True, "yes"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_cell_text(value, text):
    assert _cell(value) == text


def test_terminal_table_is_aligned():
    frame = pd.DataFrame({"op": ["a", "longer"], "flops": [12345, 7], "time_s": [2.5e-7, 0.5]})
    lines = render(frame, "table").splitlines()
    assert lines[0].split() == ["op", "flops", "time_s", "(ms)"] and set(lines[1]) <= {"-", " "}
    assert lines[2:] == ["a       12,345      0.00025", "longer       7          500"]  # one unit: the largest value's
    assert len({len(line) for line in lines}) == 1  # numbers right-aligned to one edge


def test_one_unit_per_seconds_column():
    """A column of seconds is shown in one unit, named in its header (issue 11): 250 ns
    and 320.7 µs are 0.25 and 320.7 µs."""
    frame = pd.DataFrame({"op": ["a", "b"], "time_s": [2.5e-7, 3.207e-4]})
    lines = render(frame, "table").splitlines()
    assert lines[0].split() == ["op", "time_s", "(µs)"]
    assert [line.split()[1] for line in lines[2:]] == ["0.25", "320.7"]


def test_wide_table_prints_one_column_per_row():
    """A few rows too wide for a terminal print transposed, headed by the first column."""
    frame = pd.DataFrame({"model": ["A", "B"], **{f"quantity_number_{i}_bytes": [10**9 + i, 2] for i in range(12)}})
    lines = render(frame, "table").splitlines()
    assert lines[0].split() == ["model", "A", "B"]
    assert lines[2].split() == ["quantity_number_0_bytes", "1,000,000,000", "2"]
    assert len(lines) == 2 + 12


def _leaf_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_has_format_and_output():
    """Each command of the CLI takes --format with all of table/csv/json/markdown/latex, and --output."""
    for path, command in _leaf_commands(cli):
        options = {p.name: p for p in command.params}
        assert "fmt" in options and "output" in options, " ".join(path)
        assert tuple(options["fmt"].type.choices) == FORMATS, " ".join(path)


@pytest.mark.parametrize(
    "args",
    [
        ["params", "--model", "gpt2"],
        ["flops", "--model", "gpt2", "--by", "operator"],
        ["sweep", "--model", "gpt2", "--metric", "kv_cache_bytes", "--batch", "1,2", "--context", "64,128"],
        ["hardware", "list"],
    ],
)
def test_commands_write_every_format(tmp_path, capsys, args):
    """--output FILE gets the same text as stdout, and each format reads back."""
    main([*args, "--format", "json"])
    records = json.loads(capsys.readouterr().out)
    for fmt in ("csv", "json", "markdown", "latex"):
        path = tmp_path / f"out.{fmt}"
        main([*args, "--format", fmt, "--output", str(path)])
        assert capsys.readouterr().out == ""
        text = path.read_text()
        if fmt == "csv":
            assert len(pd.read_csv(io.StringIO(text))) == len(records)
        elif fmt == "json":
            assert json.loads(text) == records
        elif fmt == "markdown":
            assert len(text.strip().splitlines()) == 2 + len(records)
        else:
            assert text.startswith("\\begin{tabular}") and len(_tabular_rows(text)) == len(records)
