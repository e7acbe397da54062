"""Issue 11: hostile and mistaken inputs through the command line (in-process, through
``cli.main``). Each is refused with exactly the one stderr line written in
``hostile_cases.CASES`` (the message is the specification: it names the field and the
fix), exit status 2, nothing on stdout, and no file touched."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmodel.cli import main
from conftest import REPO, preset_config
from hostile_cases import CASES, long_name, write_files


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    write_files(d)
    return d


def refused(capsys, argv) -> str:
    """The one stderr line of a refused command (exit 2, nothing on stdout)."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    captured = capsys.readouterr()
    assert done.value.code == 2, captured.err
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _latin1_byte(folder) -> int:
    """Where the first non-UTF-8 byte is: the é of "café" written in Latin-1."""
    return (folder / "latin1.json").read_bytes().index("é".encode("latin-1"))


@pytest.mark.parametrize("case, argv, message", [pytest.param(*c, id=c[0]) for c in CASES])
def test_one_error_line(capsys, folder, case, argv, message):
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    fill = {"d": str(folder), "latin1_byte": _latin1_byte(folder)}
    assert refused(capsys, [a.format(**fill) for a in argv]) == message.format(**fill)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # nothing written


def test_file_name_over_the_os_limit(capsys, folder):
    name = long_name(folder)  # 305 characters: over NAME_MAX (255)
    line = refused(capsys, ["params", "--model", name])
    assert line.startswith("error: cannot read model config '") and line.endswith("…" + name[-15:] + "': File name too long")


def test_set_plus_sets_a_field_the_reader_does_not_read(capsys):
    """The explicit way past the check: ``+KEY`` is set (and ignored by the count)."""
    main(["params", "--model", "llama-3-8b", "--set", "+my_note=1", "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["total_params"] == 8_030_261_248  # Meta's Llama 3 8B card: 8.03B


def test_known_set_key_still_works(capsys):
    """A field the llama reader reads: 8 -> 1 KV head shrinks the cache 8x (llama-3-8b:
    32 layers x 2 (K, V) x 128 head_dim x 2 bytes = 16384 bytes per token with one head)."""
    main(["kv-cache", "--model", "llama-3-8b", "--context", "1k", "--set", "num_key_value_heads=1", "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["kv_cache_bytes_per_token"] == 32 * 2 * 128 * 2
    assert row["model"] == "llama-3-8b num_key_value_heads=1"


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(preset_config("llama-3-8b")))
    return path


def test_output_over_the_model_file_is_refused(capsys, model_file):
    before = model_file.read_bytes()
    line = refused(capsys, ["params", "--model", str(model_file), "--output", str(model_file)])
    assert line == f"error: --output {str(model_file)!r} is the --model file; choose another name"
    assert model_file.read_bytes() == before
    # a folder holding config.json names the same file
    line = refused(capsys, ["params", "--model", str(model_file.parent), "--output", str(model_file)])
    assert line == f"error: --output {str(model_file)!r} is the --model file; choose another name"


def test_plot_over_the_output_is_refused(capsys, tmp_path):
    out = tmp_path / "r.png"
    line = refused(capsys, ["roofline", "--model", "gpt2", "--gpu", "h100", "--output", str(out), "--plot", str(out)])
    assert line == f"error: --plot {str(out)!r} is the --output file; choose another name"
    assert not out.exists()


def test_failed_write_leaves_the_old_file(capsys, tmp_path, monkeypatch):
    """A write that fails part-way (disk full) keeps the existing file and leaves no
    temporary file behind."""
    out = tmp_path / "params.csv"
    out.write_text("precious\n")

    def half_then_full(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full)
    line = refused(capsys, ["params", "--model", "gpt2", "--output", str(out)])
    assert line == f"error: cannot write {str(out)!r}: No space left on device"
    monkeypatch.undo()
    assert out.read_text() == "precious\n" and [p.name for p in tmp_path.iterdir()] == ["params.csv"]


def test_failed_plot_leaves_no_half_chart(capsys, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    chart = tmp_path / "r.png"

    def broken(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(27, "File too large")

    monkeypatch.setattr(Figure, "savefig", broken)
    line = refused(capsys, ["roofline", "--model", "gpt2", "--gpu", "h100", "--plot", str(chart)])
    assert line == f"error: cannot write {str(chart)!r}: File too large"
    assert list(tmp_path.iterdir()) == []


def test_output_format_from_extension(capsys, tmp_path):
    """``x.csv`` writes CSV, ``x.json`` JSON records, without --format."""
    main(["params", "--model", "gpt2", "--output", str(tmp_path / "p.csv")])
    main(["params", "--model", "gpt2", "--output", str(tmp_path / "p.json")])
    assert (tmp_path / "p.csv").read_text().startswith("model,total_params,")
    # GPT-2 small: 124,439,808 parameters (tied head; OpenAI's 124M)
    assert json.loads((tmp_path / "p.json").read_text())[0]["total_params"] == 124_439_808


def test_measure_without_torch(capsys, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    line = refused(capsys, ["hardware", "measure", "--save", str(tmp_path / "me.json")])
    assert line == "error: hardware measure needs torch, which is not installed: pip install -e '.[test]' (the test extra)"
    assert list(tmp_path.iterdir()) == []


def _run(*args, env=None, stdout=subprocess.PIPE):
    return subprocess.run([sys.executable, "-m", "perfmodel", *args], cwd=REPO, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_stdout_on_a_full_device():
    with open("/dev/full", "w") as full:
        result = _run("params", "--model", "gpt2", stdout=full)
    assert result.returncode == 2 and result.stderr == "error: No space left on device\n"


def test_ascii_only_locale():
    """µ (the table's micro prefix) on a terminal that only takes ASCII."""
    result = _run("roofline", "--model", "gpt2", "--gpu", "h100", env={"LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "lm_head" in result.stdout


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
FIELDS = sorted(preset_config("llama-3-8b")) + ["head_dim", "layer_types", "sliding_window"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES, command=st.sampled_from(["params", "kv-cache", "roofline"]))
def test_any_value_in_any_field_is_a_result_or_one_error_line(capsys, tmp_path_factory, field, value, command):
    """Whatever JSON value a config field holds, the command answers or refuses with one
    ``error:`` line (exit 2): never a traceback."""
    path = tmp_path_factory.mktemp("any") / "config.json"
    path.write_text(json.dumps({**preset_config("llama-3-8b"), field: value}))
    extra = {"params": [], "kv-cache": ["--context", "1k"], "roofline": ["--gpu", "h100", "--by", "total"]}[command]
    try:
        main([command, "--model", str(path), *extra, "--format", "json"])
    except SystemExit as done:
        captured = capsys.readouterr()
        assert done.code == 2 and captured.out == "", captured.err
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "could not handle" not in lines[0], captured.err
    else:
        json.loads(capsys.readouterr().out)
