"""``perfmodel batch COMMAND --input FILE`` (CLI.md's ``batch`` row).

The independent source for every result is the single command itself: each row is
turned into the command line CLI.md says the columns stand for (``--kv-dtype`` for
``kv_dtype``, a list as a repeated option, ``true``/``false`` as ``--x``/``--no-x``,
arguments by position), run alone through click's CliRunner, and its JSON must equal
the batch's rows for that input row. Error cases go through the real entry point
(``cli.main``): one ``error:`` line on stderr, nothing on stdout, exit status 2.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from perfmodel import cli
from conftest import REPO

# (command words, its positional columns, rows): rows as JSON-lines objects; None = not given
CASES = [
    (["params"], [], [{"model": "qwen3-8b"}, {"model": "llama-3-8b", "set": ["num_hidden_layers=2", "vocab_size=1000"]}, {"model": "mixtral-8x7b"}]),
    (["kv-cache"], [], [{"model": "llama-3-8b", "context": "128k", "kv_dtype": "fp8"}, {"model": "qwen3-8b", "context": 4096, "batch": 8}, {"model": "llama-3-8b", "context": "1k", "batch": None}]),
    (["flops"], [], [{"model": "llama-3-8b", "phase": "decode", "context": "4k", "by": "operator"}, {"model": "llama-3-8b", "phase": "prefill", "seq": 512}, {"model": "qwen3-8b", "phase": "train", "batch": 2, "mask": "none"}]),
    (["memory"], [], [{"model": "llama-3-8b", "gpu": "h100-sxm", "batch": 16, "context": "8k"}, {"model": "qwen3-8b", "phase": "train", "seq": 1024, "weight_dtype": "fp8"}]),
    (["roofline"], [], [{"model": "llama-3-8b", "gpu": "h100-sxm", "by": "total", "batch": 32}, {"model": "qwen3-8b", "gpu": "a100-80gb-sxm", "phase": "prefill", "seq": "2k"}]),
    (["balance"], [], [{"model": "llama-3-8b", "gpu": "h100-sxm", "context": "4k"}, {"model": "qwen3-8b", "gpu": "h100-sxm", "kv_dtype": "fp8", "weight_dtype": "int4"}]),
    (["attention"], [], [{"gpu": "h100-sxm", "heads": 32, "kv_heads": 8, "seq_q": "4k", "causal": False}, {"gpu": "h100-sxm", "heads": 16, "seq_q": 1, "seq_kv": "16k", "causal": True, "pass": "fwd"}, {"gpu": "h100-sxm", "heads": 32, "seq_q": "2k", "pass": "bwd"}]),
    (["compare"], [], [{"model": ["llama-3-8b", "MQA=llama-3-8b:num_key_value_heads=1"], "gpu": "h100-sxm", "context": "8k"}, {"model": ["qwen3-8b"], "gpu": "h100-sxm", "batch": 4}]),
    (["formula"], ["quantity"], [{"quantity": "kv-cache", "model": "llama-3-8b", "context": "8k"}, {"quantity": "params", "model": "qwen3-8b", "latex": True}, {"quantity": "flops", "model": "llama-3-8b", "latex": False}]),
    (["hardware", "show"], ["gpu"], [{"gpu": "h100-sxm"}, {"gpu": "a100-80gb-sxm"}]),
]
NEGATABLE = {"causal"}  # --causal/--no-causal; other flags are on or absent


def argv_of(words: list[str], positional: list[str], row: dict) -> list[str]:
    """The single command line a row stands for, written from CLI.md's naming rule."""
    options, arguments = [], [str(row[c]) for c in positional if row.get(c) is not None]
    for column, value in row.items():
        if value is None or column in positional:
            continue
        flag = "--" + column.replace("_", "-")
        if isinstance(value, bool):
            if value or column in NEGATABLE:
                options.append(flag if value else "--no-" + column)
        elif isinstance(value, list):
            for v in value:
                options += [flag, str(v)]
        else:
            options += [flag, str(value)]
    return words + arguments + options


def single(argv: list[str]) -> list[dict]:
    result = CliRunner().invoke(cli.cli, argv + ["--format", "json"])
    assert result.exit_code == 0, (argv, result.output, result.exception)
    return json.loads(result.stdout)  # stderr may carry warnings (beyond the trained context, …)


def main(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cli.main(argv)`` in this process: (exit status, stdout, stderr)."""
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def batch_json(capsys, words, path, *extra) -> list[dict]:
    code, out, err = main(["batch", *words, "--input", str(path), "--format", "json", *extra], capsys)
    assert code == 0 and all(line.startswith("warning: ") for line in err.splitlines()), err
    return json.loads(out)


def by_row(records: list[dict], index: int, columns: set | None = None) -> list[dict]:
    """The batch's records for input row ``index``, without ``input_row`` (and limited
    to ``columns`` when given: cells a row lacks are null in the concatenated table)."""
    rows = [r for r in records if r["input_row"] == index]
    return [{k: v for k, v in r.items() if k != "input_row" and (columns is None or k in columns)} for r in rows]


def _write(path, text: str):
    path.write_text(text)
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows))
    return path


def write_csv(path, rows):
    """CSV as a person writes it: empty cell = not given, lists `;`-joined, true/false."""
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return ";".join(v)
        return str(v)

    path.write_text("\n".join([",".join(columns)] + [",".join(cell(r.get(c)) for c in columns) for r in rows]) + "\n")
    return path


@pytest.mark.parametrize("words,positional,rows", CASES, ids=[" ".join(c[0]) for c in CASES])
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_rows_equal_the_single_commands(tmp_path, capsys, words, positional, rows, kind):
    path = (write_jsonl if kind == "jsonl" else write_csv)(tmp_path / f"rows.{kind}", rows)
    records = batch_json(capsys, words, path)
    assert list(records[0])[0] == "input_row"
    assert [r["input_row"] for r in records] == sorted(r["input_row"] for r in records)  # input order
    for index, row in enumerate(rows):
        expected = single(argv_of(words, positional, row))
        assert json.dumps(by_row(records, index, set(expected[0])), sort_keys=True) == json.dumps(expected, sort_keys=True), (index, row)  # text: 1 vs 1.0 too
        extra = {k for r in by_row(records, index) for k, v in r.items() if k not in expected[0] and v is not None}
        assert not extra  # a row's own columns only; the others are null


def test_rows_keep_input_order_not_sorted(tmp_path, capsys):
    """Rows come back in file order, whatever their values."""
    contexts = [65536, 1024, 32768, 2048]
    rows = "model,context\n" + "".join(f"llama-3-8b,{c}\n" for c in contexts)
    records = batch_json(capsys, ["kv-cache"], _write(tmp_path / "r.csv", rows))
    assert [(r["input_row"], r["context"]) for r in records] == list(enumerate(contexts))


def test_csv_and_jsonl_of_the_same_rows_agree(tmp_path, capsys):
    rows = CASES[6][2] + [{"gpu": "h100-sxm", "heads": 8, "seq_q": "1k", "window": 256}]
    a = batch_json(capsys, ["attention"], write_jsonl(tmp_path / "a.jsonl", rows))
    b = batch_json(capsys, ["attention"], write_csv(tmp_path / "a.csv", rows))
    assert a == b


@pytest.mark.parametrize("name,text", [
    ("rows.txt", '{"model": "qwen3-8b", "context": "2k"}\n\n{"model": "llama-3-8b", "context": 512}\n'),
    ("rows.txt", "model,context\nqwen3-8b,2k\n\nllama-3-8b,512\n"),
    ("rows.ndjson", '{"model": "qwen3-8b", "context": "2k"}\n{"model": "llama-3-8b", "context": 512}'),
    ("rows", "\ufeffmodel , context\n qwen3-8b , 2k\nllama-3-8b,512\n"),  # BOM, spaces
], ids=["sniff-json", "sniff-csv", "ndjson-no-final-newline", "csv-bom-spaces"])
def test_formats_by_extension_or_sniffed(tmp_path, capsys, name, text):
    """Blank lines are not rows: input_row counts rows only."""
    records = batch_json(capsys, ["kv-cache"], _write(tmp_path / name, text))
    assert by_row(records, 0) == single(["kv-cache", "--model", "qwen3-8b", "--context", "2k"])
    assert by_row(records, 1) == single(["kv-cache", "--model", "llama-3-8b", "--context", "512"])


def test_output_file_and_table_format(tmp_path, capsys):
    path = _write(tmp_path / "r.csv", "model\nqwen3-8b\nllama-3-8b\n")
    out_file = tmp_path / "out.csv"
    code, out, err = main(["batch", "params", "--input", str(path), "--format", "csv", "--output", str(out_file)], capsys)
    assert (code, out, err) == (0, "", "")
    lines = out_file.read_text().splitlines()
    assert lines[0].startswith("input_row,model,total_params") and lines[1].startswith("0,qwen3-8b,") and lines[2].startswith("1,llama-3-8b,")
    code, out, _ = main(["batch", "params", "--input", str(path)], capsys)
    assert code == 0 and out.split()[:3] == ["input_row", "0", "1"]  # wide: one column per row


def single_error(argv: list[str], capsys) -> str:
    """The message the single command refuses ``argv`` with (its ``error:`` line)."""
    code, out, err = main(argv, capsys)
    assert code == 2 and not out and err.count("\n") == 1 and err.startswith("error: "), err
    return err[len("error: "):].rstrip("\n")


def test_failing_row_stops_with_its_message(tmp_path, capsys):
    path = _write(tmp_path / "r.csv", "model,context\nllama-3-8b,1k\nllama-3-8bb,1k\nqwen3-8b,12q\n")
    message = single_error(["kv-cache", "--model", "llama-3-8bb", "--context", "1k"], capsys)
    code, out, err = main(["batch", "kv-cache", "--input", str(path)], capsys)
    assert (code, out, err) == (2, "", f"error: row 1: {message}\n")


def test_keep_going_puts_the_message_in_an_error_column(tmp_path, capsys):
    path = _write(tmp_path / "r.csv", "model,context\nllama-3-8b,1k\nllama-3-8bb,1k\nqwen3-8b,12q\n,2k\nqwen3-8b,2k\n")
    messages = [single_error(argv, capsys) for argv in (
        ["kv-cache", "--model", "llama-3-8bb", "--context", "1k"],
        ["kv-cache", "--model", "qwen3-8b", "--context", "12q"],
        ["kv-cache", "--context", "2k"],
    )]
    records = batch_json(capsys, ["kv-cache"], path, "--keep-going")
    assert list(records[0])[:2] == ["input_row", "error"]
    assert [r["input_row"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["error"] for r in records] == [None, *messages, None]
    for index, argv in ((0, ["--model", "llama-3-8b", "--context", "1k"]), (4, ["--model", "qwen3-8b", "--context", "2k"])):
        expected = single(["kv-cache", *argv])
        assert by_row(records, index, set(expected[0])) == expected
    assert all(v is None for r in records[1:4] for k, v in r.items() if k not in ("input_row", "error"))


ERRORS = [
    ("unknown-column", ["kv-cache"], "r.csv", "model,contxt\nllama-3-8b,1k\n",
     "unknown column 'contxt' for kv-cache; did you mean context? (its columns: model, set, context, batch, kv_dtype, mla, source_len)"),
    ("output-column", ["params"], "r.csv", "model,format\nllama-3-8b,json\n",
     "unknown column 'format' for params (its columns: model, set)"),
    ("empty", ["params"], "r.csv", "", "{path}: empty file, expected rows of option values"),
    ("blank", ["params"], "r.jsonl", "\n \n", "{path}: empty file, expected rows of option values"),
    ("header-only", ["params"], "r.csv", "model,set\n", "{path}: no rows below the header"),
    ("bad-json", ["params"], "r.jsonl", '{"model": "qwen3-8b"}\n\n{"model": "llama-3-8b",\n',
     "{path} line 3: malformed JSON: Expecting property name enclosed in double quotes (column 24)"),
    ("not-an-object", ["params"], "r.jsonl", '["qwen3-8b"]\n', "{path} line 1: expected a JSON object, got list"),
    ("nested-object", ["params"], "r.jsonl", '{"model": "qwen3-8b"}\n{"model": {"name": "x"}}\n',
     "{path} line 2: 'model' holds dict {\"name\": \"x\"}; a value is a string, number, boolean, null or a list of those"),
    ("nested-list", ["params"], "r.jsonl", '{"model": "qwen3-8b", "set": [["a=1"]]}\n',
     "{path} line 1: 'set' holds list [[\"a=1\"]]; a value is a string, number, boolean, null or a list of those"),
    ("ragged-csv", ["params"], "r.csv", "model\nqwen3-8b\nllama-3-8b,x\n", "{path} line 3: 2 cells, the header has 1"),
    ("duplicate-column", ["params"], "r.csv", "model,model\nqwen3-8b,x\n", "{path} line 1: column 'model' appears twice"),
    ("unnamed-column", ["params"], "r.csv", "model,\nqwen3-8b,x\n", "{path} line 1: column 2 has no name"),
    ("bad-flag", ["attention"], "r.csv", "gpu,heads,seq_q,causal\nh100-sxm,8,1k,true\nh100-sxm,8,1k,maybe\n",
     "row 1: column 'causal': expected true or false, got 'maybe'"),
    ("list-for-one-value", ["params"], "r.jsonl", '{"model": ["qwen3-8b", "llama-3-8b"]}\n',
     "row 0: column 'model': takes one value, got a list ['qwen3-8b', 'llama-3-8b']"),
    ("unknown-command", ["kv-cach"], "r.csv", "model\nqwen3-8b\n", "unknown command 'kv-cach'; did you mean kv-cache, batch?"),
    ("group", ["hardware"], "r.csv", "gpu\nh100-sxm\n", "hardware is a group; name one of its commands: list, measure, show"),
    ("batch-of-batch", ["batch"], "r.csv", "input\nx.csv\n", "batch cannot run batch; put all the rows in one file"),
]


@pytest.mark.parametrize("case,words,name,text,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_is_one_error_line(tmp_path, capsys, case, words, name, text, message):
    path = _write(tmp_path / name, text)
    code, out, err = main(["batch", *words, "--input", str(path)], capsys)
    assert (code, out, err) == (2, "", "error: " + message.replace("{path}", str(path)) + "\n")


def test_not_utf8_and_missing_file(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_bytes("model\nqwen3-8b\n".encode() + b"\xff\n")
    code, out, err = main(["batch", "params", "--input", str(path)], capsys)
    assert (code, out, err) == (2, "", f"error: {path}: not UTF-8 text (byte 0xff at offset 15)\n")
    missing = tmp_path / "none.csv"
    code, out, err = main(["batch", "params", "--input", str(missing)], capsys)
    assert (code, out, err) == (2, "", f"error: cannot read {missing}: No such file or directory\n")


def test_batch_never_imports_torch(tmp_path):
    """The real entry point in a fresh interpreter, then its ``sys.modules``."""
    path = _write(tmp_path / "r.jsonl", '{"model": "qwen3-8b", "gpu": "h100-sxm"}\n')
    probe = ("import sys\nfrom perfmodel import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    result = subprocess.run([sys.executable, "-c", probe, "batch", "roofline", "--input", str(path), "--format", "csv"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("input_row,operator,")
    assert result.stdout.splitlines()[-1] == "[]"


def test_keep_going_refuses_a_command_with_its_own_error_column(tmp_path, capsys):
    """``validate attention`` reports an ``error`` column (predicted/measured - 1)."""
    path = _write(tmp_path / "r.jsonl", '{"published": true}\n')
    code, out, err = main(["batch", "validate", "attention", "--input", str(path), "--keep-going"], capsys)
    assert (code, out, err) == (2, "", "error: validate attention has its own 'error' column, which batch would add; run without --keep-going\n")
