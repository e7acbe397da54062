"""``import perfmodel``, ``perfmodel --help`` and the counting commands (params, shapes,
kv-cache, formula) never load torch or transformers (CLI.md; briefing: "torch only in
validation/measurement code, imported inside functions"); ``import perfmodel`` and
``--help`` do not load matplotlib or pandas either, and the quick commands (``params``,
``kv-cache``, ``roofline``, ``balance``: issue 11's cold start) load none of torch,
transformers, matplotlib or pandas. Their speed is measured in ``benchmarks/bench.py
cold-start``, not here.

Each check runs in a fresh interpreter and reads ``sys.modules`` after the work is done;
one also runs the real entry point under ``python3 -X importtime`` and reads every
module it imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

HEAVY = ("torch", "transformers", "matplotlib")

PROBE = r"""
import contextlib, io, json, sys
argv = json.loads(sys.argv[1])
out, code = io.StringIO(), 0
with contextlib.redirect_stdout(out):
    if argv == "import":
        import perfmodel
    elif argv == "import+api":
        import perfmodel
        perfmodel.params(perfmodel.load_model("qwen3-30b-a3b"))
    else:
        from perfmodel import cli
        try:
            cli.main(argv)
        except SystemExit as exc:
            code = exc.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "matplotlib", "pandas"})
print(json.dumps({"code": code, "output_chars": len(out.getvalue()), "heavy": heavy}))
"""


def probe(argv) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_import_perfmodel_is_light():
    assert probe("import")["heavy"] == []


def test_library_queries_are_light():
    """The lazy exports (load_model, params) resolve without torch or transformers."""
    assert not set(probe("import+api")["heavy"]) & {"torch", "transformers"}


@pytest.mark.parametrize("argv", [["--help"], ["params", "--help"], ["kv-cache", "--help"]], ids=" ".join)
def test_help_is_light(argv):
    r = probe(argv)
    assert r["code"] == 0 and r["output_chars"] > 0
    assert r["heavy"] == []


COMMANDS = [
    ["params", "--model", "deepseek-v3"],
    ["shapes", "--model", "mixtral-8x7b"],
    ["kv-cache", "--model", "gemma-2-9b", "--context", "8k"],
    ["formula", "kv-cache", "--model", "llama-3-8b"],
    ["formula", "params", "--model", "qwen3-30b-a3b", "--format", "json"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_counting_commands_never_import_torch_or_transformers(argv):
    r = probe(argv)
    assert r["code"] == 0 and r["output_chars"] > 0, r
    assert not set(r["heavy"]) & {"torch", "transformers"}, r["heavy"]


QUICK = [
    ["params", "--model", "llama-3-8b"],
    ["kv-cache", "--model", "llama-3-8b", "--context", "8192"],
    ["roofline", "--model", "llama-3-8b", "--gpu", "h100"],
    ["roofline", "--model", "llama-3-8b", "--gpu", "h100", "--by", "total", "--format", "csv"],
    ["balance", "--model", "llama-3-8b", "--gpu", "h100"],
    ["balance", "--model", "mixtral-8x7b", "--gpu", "h100", "--by", "operator", "--format", "json"],
    ["roofline", "--model", "deepseek-v3", "--gpu", "h100", "--by", "layer", "--format", "markdown"],
]


@pytest.mark.parametrize("argv", QUICK, ids=" ".join)
def test_quick_commands_never_import_pandas(argv):
    """The cold-start commands render plain rows: no pandas (nor torch, transformers,
    matplotlib) in ``sys.modules`` once they have printed."""
    r = probe(argv)
    assert r["code"] == 0 and r["output_chars"] > 0, r
    assert r["heavy"] == [], r["heavy"]


def test_entry_point_importtime():
    """``python3 -X importtime -m perfmodel kv-cache ...``: the import log (stderr) of
    the real entry point names no heavy module."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "perfmodel", "kv-cache", "--model", "deepseek-v3", "--context", "4k"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "perfmodel" in imported and "sympy" in imported  # the log is read
    assert not imported & {"torch", "transformers"}
