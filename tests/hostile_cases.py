"""Hostile and mistaken inputs (issue 11), shared by the tests: the files each case
needs, and for each case the command line and the exact one-line message expected.
``{d}`` in an argument or message is the folder holding the files."""

from __future__ import annotations

import json
import os

from conftest import preset_config

ACC = {"name": "x", "memory_bytes": 80 * 2**30, "memory_bandwidth_bytes_per_s": 3.35e12, "peak_flops_per_s": {"bf16": 1e15}}
MEASURED_HEADER = "batch,heads,kv_heads,head_dim,seq_q,seq_kv,causal,dtype,pass,measured_s,accelerator,accelerator_key\n"
MEASURED_ROW = "1,8,8,64,128,128,{causal},bf16,fwd,{measured},H100 SXM 80GB,h100-sxm\n"


def _llama(**changes) -> str:
    return json.dumps({**preset_config("llama-3-8b"), **changes})


def _acc(**changes) -> str:
    return json.dumps({**ACC, **changes})


def write_files(d) -> None:
    """Every file the cases name, in folder ``d``."""
    llama = json.dumps(preset_config("llama-3-8b"))
    text = {
        "nan.json": llama.replace('"hidden_size": 4096', '"hidden_size": NaN'),
        "inf.json": llama.replace('"hidden_size": 4096', '"hidden_size": Infinity'),
        "digits.json": llama.replace('"hidden_size": 4096', '"hidden_size": ' + "9" * 5000),
        "nested.json": _llama(hidden_size=[4096]),
        "type_dict.json": _llama(model_type={"a": 1}),
        "duplicate.json": llama[:-1] + ', "hidden_size": 2048}',
        "layers7.json": _llama(num_hidden_layers=10**7),
        "layers18.json": _llama(num_hidden_layers=10**18),
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "deep.yaml": "[" * 100_000 + "]" * 100_000,
        "bomb.yaml": "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
        "huge_exp.json": _acc(memory_bandwidth_bytes_per_s="1e999999999"),
        "tiny_exp.yaml": "name: x\nmemory_bytes: 85899345920\nmemory_bandwidth_bytes_per_s: 1e-999999999\npeak_flops_per_s: {bf16: 1e15}\n",
        "denormal.json": _acc(memory_bandwidth_bytes_per_s=5e-324),
        "tb_meant.json": _acc(memory_bandwidth_bytes_per_s=3.35),
        "peaks_twice.json": _acc(peak_flops_per_s={"bf16": 1e15, "BF16": 2e15}),
        "acc_duplicate.json": _acc()[:-1] + ', "memory_bytes": 1}',
        "acc_efficiency.json": _acc()[:-1] + ', "matmul_efficiency": 1.2}',
        "empty.csv": "",
        "header_only.csv": MEASURED_HEADER,
        "no_columns.csv": "batch,heads\n1,8\n",
        "words.csv": MEASURED_HEADER + MEASURED_ROW.format(causal="true", measured="0.001").replace("1,8,8", "one,8,8", 1),
        "fractional.csv": MEASURED_HEADER + MEASURED_ROW.format(causal="true", measured="0.001").replace("1,8,8", "1.5,8,8", 1),
        "zero_time.csv": MEASURED_HEADER + MEASURED_ROW.format(causal="true", measured="0"),
        "negative_time.csv": MEASURED_HEADER + MEASURED_ROW.format(causal="true", measured="-1e-3"),
        "maybe.csv": MEASURED_HEADER + MEASURED_ROW.format(causal="maybe", measured="0.001"),
        "rows_duplicate.jsonl": '{"model": "gpt2", "model": "llama-3-8b"}\n',
        "rows_nan.jsonl": '{"model": "gpt2", "batch": NaN}\n',
        "fit_list.json": "[]",
        "fit_null.json": "null",
        "fit_words.json": '"hello"',
        "fit_group_words.json": '{"groups": {"fa2/prefill@h100-sxm": {"group": "g", "e_max": "high"}}}',
    }
    for name, content in text.items():
        (d / name).write_text(content, encoding="utf-8")
    (d / "utf16.json").write_bytes(llama.encode("utf-16"))
    (d / "latin1.json").write_bytes(json.dumps({**preset_config("llama-3-8b"), "name": "café"}, ensure_ascii=False).encode("latin-1"))
    (d / "binary.json").write_bytes(bytes(range(256)) * 4)
    os.mkfifo(d / "fifo.json")


def long_name(d) -> str:
    return str(d / ("a" * 300 + ".json"))


R = ["roofline", "--model", "llama-3-8b", "--gpu"]
V = ["validate", "attention", "--measured"]
F = ["validate", "attention", "--published", "--fit"]

#: (case, argv, the exact stderr line)
CASES = [
    # silent wrong answers, now refused
    ("set-typo-kv-heads", ["params", "--model", "llama-3-8b", "--set", "num_kv_heads=1"],
     "error: --set num_kv_heads: unknown field for model_type 'llama'; did you mean num_key_value_heads, num_attention_heads? (--set +num_kv_heads=VALUE sets it anyway)"),
    ("set-typo-missing-s", ["params", "--model", "llama-3-8b", "--set", "num_key_value_head=1"],
     "error: --set num_key_value_head: unknown field for model_type 'llama'; did you mean num_key_value_heads? (--set +num_key_value_head=VALUE sets it anyway)"),
    ("set-foo", ["params", "--model", "llama-3-8b", "--set", "foo=bar"],
     "error: --set foo: unknown field for model_type 'llama'; not a field this family reads (--set +foo=VALUE sets it anyway)"),
    ("set-dotted", ["params", "--model", "llama-3-8b", "--set", "rope_scaling.factor=2"],
     "error: --set rope_scaling.factor: unknown field for model_type 'llama'; did you mean rope_scaling? (--set +rope_scaling.factor=VALUE sets it anyway)"),
    ("set-gqa-on-gpt2", ["params", "--model", "gpt2", "--set", "num_key_value_heads=1"],
     "error: --set num_key_value_heads: unknown field for model_type 'gpt2'; did you mean num_attention_heads? (--set +num_key_value_heads=VALUE sets it anyway)"),
    ("compare-spec-typo", ["compare", "--model", "llama-3-8b", "--model", "llama-3-8b:num_kv_heads=1", "--gpu", "h100"],
     "error: model 'llama-3-8b:num_kv_heads=1': --set num_kv_heads: unknown field for model_type 'llama'; did you mean num_key_value_heads, num_attention_heads? (--set +num_kv_heads=VALUE sets it anyway)"),
    ("duplicate-config-key", ["params", "--model", "{d}/duplicate.json"], "error: {d}/duplicate.json: duplicate key 'hidden_size'"),
    ("peaks-twice-by-case", [*R, "{d}/peaks_twice.json"], "error: {d}/peaks_twice.json: peak_flops_per_s.BF16: given twice (also as 'bf16'; dtypes ignore case)"),
    ("accelerator-duplicate-key", [*R, "{d}/acc_duplicate.json"], "error: {d}/acc_duplicate.json: duplicate key 'memory_bytes'"),
    ("efficiency-above-1", [*R, "h100", "--compute-efficiency", "1.5"],
     "error: Invalid value for '--compute-efficiency': 1.5 is not in the range 0<x<=1."),
    ("efficiency-zero", [*R, "h100", "--bandwidth-efficiency", "0"],
     "error: Invalid value for '--bandwidth-efficiency': 0.0 is not in the range 0<x<=1."),
    ("bandwidth-tb-meant", [*R, "{d}/tb_meant.json"],
     "error: {d}/tb_meant.json: memory_bandwidth_bytes_per_s: 3.35 bytes/s is implausible (expected 1e+08 to 1e+15 bytes/s; give base units, e.g. 3.35e12 for 3.35 TB/s)"),
    ("measured-fractional-batch", [*V, "{d}/fractional.csv"],
     "error: measurements {d}/fractional.csv: row 2: batch: expected a positive whole number, got 1.5"),
    ("measured-zero-time", [*V, "{d}/zero_time.csv"],
     "error: measurements {d}/zero_time.csv: row 2: measured_s: expected a positive number of seconds (or blank), got 0"),
    ("measured-negative-time", [*V, "{d}/negative_time.csv"],
     "error: measurements {d}/negative_time.csv: row 2: measured_s: expected a positive number of seconds (or blank), got -0.001"),
    ("measured-causal-maybe", [*V, "{d}/maybe.csv"],
     "error: measurements {d}/maybe.csv: row 2: causal: expected true or false, got 'maybe'"),
    ("empty-model-name", ["params", "--model", ""], "error: --model: empty name; give a preset (`perfmodel models`) or a config.json path"),
    # tracebacks and hangs before
    ("nan-size", ["params", "--model", "{d}/nan.json"], "error: {d}/nan.json: NaN is not a number (JSON numbers must be finite)"),
    ("infinity-size", ["params", "--model", "{d}/inf.json"], "error: {d}/inf.json: Infinity is not a number (JSON numbers must be finite)"),
    ("5000-digit-size", ["params", "--model", "{d}/digits.json"], "error: {d}/digits.json: an integer of 5,000 digits is out of range"),
    ("list-size", ["params", "--model", "{d}/nested.json"], "error: hidden_size: must be an integer, got [4096]"),
    ("dict-model-type", ["params", "--model", "{d}/type_dict.json"], "error: model_type: must be a string, got {{'a': 1}}"),
    ("set-nan", ["params", "--model", "llama-3-8b", "--set", "hidden_size=NaN"], "error: --set value NaN is not a finite number"),
    ("set-huge-int", ["params", "--model", "llama-3-8b", "--set", "hidden_size=" + "9" * 5000], "error: --set value: an integer of 5,000 digits is out of range"),
    ("utf16-file", ["params", "--model", "{d}/utf16.json"], "error: model config '{d}/utf16.json': UTF-16 text; save it as UTF-8"),
    ("latin1-file", ["params", "--model", "{d}/latin1.json"], "error: model config '{d}/latin1.json': not UTF-8 text (byte {latin1_byte}); save it as UTF-8"),
    ("binary-file", ["params", "--model", "{d}/binary.json"], "error: model config '{d}/binary.json': not UTF-8 text (byte 128); save it as UTF-8"),
    ("fifo-model", ["params", "--model", "{d}/fifo.json"], "error: model config '{d}/fifo.json': not a regular file"),
    ("dev-zero-model", ["params", "--model", "/dev/zero"], "error: model config '/dev/zero': not a regular file"),
    ("ten-million-layers", ["params", "--model", "{d}/layers7.json"], "error: num_hidden_layers: 10,000,000 layers is more than the 10,000 this tool builds"),
    ("1e18-layers", ["params", "--model", "{d}/layers18.json"], "error: num_hidden_layers: 1000000000000000000 is out of range (at most 2**40)"),
    ("set-1e12-layers", ["params", "--model", "llama-3-8b", "--set", "num_hidden_layers=1000000000000"],
     "error: num_hidden_layers: 1,000,000,000,000 layers is more than the 10,000 this tool builds"),
    ("deep-json", ["params", "--model", "{d}/deep.json"], "error: {d}/deep.json: nested more than 64 levels deep"),
    ("deep-yaml", [*R, "{d}/deep.yaml"], "error: {d}/deep.yaml: nested more than 64 levels deep"),
    ("yaml-aliases", [*R, "{d}/bomb.yaml"], "error: {d}/bomb.yaml:2: YAML aliases (*a) are not allowed"),
    ("exponent-huge", [*R, "{d}/huge_exp.json"],
     "error: {d}/huge_exp.json: memory_bandwidth_bytes_per_s: 1e999999999 is out of range (exponent beyond ±30)"),
    ("exponent-tiny", [*R, "{d}/tiny_exp.yaml"],
     "error: {d}/tiny_exp.yaml: memory_bandwidth_bytes_per_s: 1e-999999999 is out of range (exponent beyond ±30)"),
    ("efficiency-above-peak", [*R, "{d}/acc_efficiency.json"],
     "error: {d}/acc_efficiency.json: matmul_efficiency: must be a fraction of peak in (0, 1], got 1.2"),
    ("denormal-bandwidth", [*R, "{d}/denormal.json"],
     "error: {d}/denormal.json: memory_bandwidth_bytes_per_s: 5e-324 is out of range (exponent beyond ±30)"),
    ("grid-factor-near-1", ["sweep", "--model", "llama-3-8b", "--gpu", "h100", "--context", "1..100:x1.0000001"],
     "error: context: '1..100:x1.0000001': the factor 1.0000001 is too close to 1 (more than 10,000 steps); use a larger one"),
    ("grid-factor-1", ["sweep", "--model", "llama-3-8b", "--gpu", "h100", "--context", "1..100:x1"],
     "error: context: '1..100:x1': a geometric factor must be above 1"),
    ("grid-factor-below-1", ["sweep", "--model", "llama-3-8b", "--gpu", "h100", "--batch", "1..100:x0.5"],
     "error: batch: '1..100:x0.5': a geometric factor must be above 1"),
    ("csv-empty", [*V, "{d}/empty.csv"], "error: measurements {d}/empty.csv: empty file (expected a CSV with a header row)"),
    ("csv-header-only", [*V, "{d}/header_only.csv"], "error: measurements {d}/header_only.csv: no rows under the header"),
    ("csv-missing-columns", [*V, "{d}/no_columns.csv"],
     "error: measurements {d}/no_columns.csv: missing columns causal, dtype, head_dim, kv_heads, measured_s, pass, seq_kv, seq_q"),
    ("csv-words", [*V, "{d}/words.csv"], "error: measurements {d}/words.csv: row 2: batch: expected a positive whole number, got 'one'"),
    ("fit-list", [*F, "{d}/fit_list.json"], "error: efficiency fit {d}/fit_list.json: expected a JSON object, got list"),
    ("fit-null", [*F, "{d}/fit_null.json"], "error: efficiency fit {d}/fit_null.json: expected a JSON object, got NoneType"),
    ("fit-words", [*F, "{d}/fit_words.json"], "error: efficiency fit {d}/fit_words.json: expected a JSON object, got str"),
    ("fit-group-words", [*F, "{d}/fit_group_words.json"],
     "error: efficiency fit {d}/fit_group_words.json: group fa2/prefill@h100-sxm: e_max: expected a number, got 'high'"),
    ("plot-extension", [*R, "h100", "--plot", "{d}/chart.jpg"], "error: plot '{d}/chart.jpg': name must end in .png, .svg, .pdf"),
    ("plot-missing-folder", [*R, "h100", "--plot", "{d}/no/chart.png"], "error: cannot write --plot '{d}/no/chart.png': folder '{d}/no' does not exist"),
    ("output-missing-folder", ["params", "--model", "llama-3-8b", "--output", "{d}/no/p.csv"],
     "error: cannot write --output '{d}/no/p.csv': folder '{d}/no' does not exist"),
    ("batch-fifo", ["batch", "params", "--input", "{d}/fifo.json"], "error: {d}/fifo.json: not a regular file"),
    ("batch-dev-zero", ["batch", "params", "--input", "/dev/zero"], "error: /dev/zero: not a regular file"),
    ("batch-duplicate-key", ["batch", "params", "--input", "{d}/rows_duplicate.jsonl"], "error: {d}/rows_duplicate.jsonl line 1: duplicate key 'model'"),
    ("batch-nan", ["batch", "params", "--input", "{d}/rows_nan.jsonl"],
     "error: {d}/rows_nan.jsonl line 1: NaN is not a number (JSON numbers must be finite)"),
    ("batch-output-over-input", ["batch", "params", "--input", "{d}/rows_nan.jsonl", "--output", "{d}/rows_nan.jsonl"],
     "error: --output '{d}/rows_nan.jsonl' is the --input file; choose another name"),
    ("save-bad-extension", ["hardware", "measure", "--save", "{d}/acc.txt"],
     "error: accelerator file '{d}/acc.txt': name must end in .json, .yaml or .yml"),
    ("save-missing-folder", ["hardware", "measure", "--save", "{d}/no/acc.json"],
     "error: cannot write --save '{d}/no/acc.json': folder '{d}/no' does not exist"),
]
