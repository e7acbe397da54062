"""Issue 11: no time without ``fits``, no silent extrapolation, one answer per quantity.

Independent sources: Meta's Llama 3 8B card (8,030,261,248 parameters; 32 layers, 8 KV
heads of 128: 2·32·8·128·2 = 131,072 bf16 KV bytes per token); the llama-2 config.json
files (max_position_embeddings 4096; 70B: 68,976,648,192 parameters = 138 GB in bf16);
the H100/A100 datasheets (80 GiB, 989.5 dense bf16 TFLOP/s, 3.35 TB/s)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmodel.cli import main
from conftest import preset_config

KV_PER_TOKEN = 131_072
WEIGHTS_8B = 2 * 8_030_261_248
GIB80 = 80 * 2**30


def _run(capsys, *argv):
    main([*argv, "--format", "json"])
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


TIME_COMMANDS = {
    "roofline-total": lambda b, t: ["roofline", "--model", "llama-3-8b", "--gpu", "h100", "--by", "total", "--batch", b, "--context", t],
    "roofline-operator": lambda b, t: ["roofline", "--model", "llama-3-8b", "--gpu", "h100", "--batch", b, "--context", t],
    "roofline-layer": lambda b, t: ["roofline", "--model", "llama-3-8b", "--gpu", "h100", "--by", "layer", "--batch", b, "--context", t],
    "formula-time": lambda b, t: ["formula", "time", "--model", "llama-3-8b", "--gpu", "h100", "--batch", b, "--context", t],
    "sweep": lambda b, t: ["sweep", "--model", "llama-3-8b", "--gpu", "h100", "--batch", f"1,{b}", "--context", t],
    "request": lambda b, t: ["request", "--model", "llama-3-8b", "--gpu", "h100", "--batch", b, "--prompt", str(int(t) + 1), "--output", "4"],
    "attention": lambda b, t: ["attention", "--gpu", "h100", "--heads", "32", "--kv-heads", "8", "--seq-q", "1", "--seq-kv", str(int(t) + 1), "--batch", b],
}


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(sorted(TIME_COMMANDS)), batch=st.integers(1, 512), context=st.integers(0, 64 * 1024))
def test_every_time_reporting_command_has_fits(capsys, command, batch, context):
    """Every row carries fits = (memory needed <= capacity); a decode step needs at
    least its weights and the cache after the step (context + 1 tokens); a row that does
    not fit is announced on stderr."""
    rows, err = _run(capsys, *TIME_COMMANDS[command](str(batch), str(context)))
    for row in rows:
        assert row["fits"] == (row["memory_needed_bytes"] <= row["capacity_bytes"]) and row["capacity_bytes"] == GIB80
        if command != "attention":
            b = row.get("batch", batch)
            assert row["memory_needed_bytes"] >= WEIGHTS_8B + b * (context + 1) * KV_PER_TOKEN
    if not all(row["fits"] for row in rows):
        assert "does not fit" in err or "do not fit" in err


def test_compare_warns_when_a_model_does_not_fit(capsys):
    """llama-2-70b in bf16 is 138 GB of weights alone: never fits an 80 GiB A100."""
    rows, err = _run(capsys, "compare", "--model", "llama-3-8b", "--model", "llama-2-70b", "--gpu", "a100", "--batch", "1")
    assert [r["fits"] for r in rows] == [True, False]
    assert err.startswith("warning: llama-2-70b at batch 1, context 2048 needs ") and "does not fit" in err


def test_roofline_that_does_not_fit_says_so(capsys):
    """The issue's example: llama-2-70b at batch 64 on an A100 80GB."""
    (row,), err = _run(capsys, "roofline", "--model", "llama-2-70b", "--gpu", "a100", "--batch", "64", "--by", "total")
    assert row["fits"] is False and row["memory_needed_bytes"] > 2 * 68_976_648_192 > GIB80
    assert err.startswith("warning: llama-2-70b at batch 64, 2,049 tokens per sequence needs ") and err.count("\n") == 1


@pytest.mark.parametrize("argv, limit, name", [
    (["kv-cache", "--model", "llama-2-7b", "--context", "32k"], "4,096", "llama-2-7b"),
    (["roofline", "--model", "llama-3-8b", "--gpu", "h100", "--by", "total", "--context", "1000000000000"], "8,192", "llama-3-8b"),
    (["compare", "--model", "llama-3-8b", "--gpu", "h100", "--context", "32k"], "8,192", "llama-3-8b"),
])
def test_context_beyond_max_position_embeddings_warns(capsys, argv, limit, name):
    _, err = _run(capsys, *argv)
    warned = [line for line in err.splitlines() if "max_position_embeddings" in line]
    assert warned == [f"warning: {name}: context beyond max_position_embeddings={limit} "
                      "(the context it was trained for); the numbers extrapolate"]  # once


def test_context_within_max_positions_is_quiet(capsys):
    _, err = _run(capsys, "kv-cache", "--model", "llama-2-7b", "--context", "4k")
    assert err == ""


def test_memory_labels_the_request(capsys):
    """--context 8k --batch 4: an inference holding 8192 tokens per sequence, prefilled
    as one chunk; 4·8192·131072 bytes of cache."""
    (row,), _ = _run(capsys, "memory", "--model", "llama-3-8b", "--context", "8k", "--batch", "4", "--gpu", "h100")
    assert (row["phase"], row["batch"], row["context"], row["chunk"]) == ("infer", 4, 8192, 8192)
    assert row["kv_cache_bytes"] == 4 * 8192 * KV_PER_TOKEN
    assert row["max_context"] == 8192 and row["max_context_limit"] == "max_position_embeddings"  # capped at 8k


def test_max_context_when_the_request_does_not_fit(capsys):
    """llama-2-7b (6,738,415,616 parameters, 13.5 GB bf16; 32 layers x 2 x 4096 x 2 =
    524,288 cache bytes per token) at batch 64 on an 80 GiB A100: 4096 tokens need
    64·4096·524288 = 137 GB of cache, so it does not fit; the memory left after the
    weights holds at most (80 GiB - 13.5 GB) / (64·524288) = 2158 tokens per sequence,
    a bit fewer with activations. The answer does not depend on the requested context."""
    answers = []
    for context in ("1k", "4k"):
        (row,), _ = _run(capsys, "memory", "--model", "llama-2-7b", "--context", context, "--batch", "64", "--gpu", "a100")
        answers.append(row["max_context"])
        assert row["max_context_limit"] == "memory"
    assert answers[0] == answers[1] and 1800 < answers[0] <= 2158
    (at,), _ = _run(capsys, "memory", "--model", "llama-2-7b", "--context", str(answers[0]), "--batch", "64", "--gpu", "a100")
    (over,), _ = _run(capsys, "memory", "--model", "llama-2-7b", "--context", str(answers[0] + 1), "--batch", "64", "--gpu", "a100")
    assert at["fits"] and not over["fits"]
    (none,), _ = _run(capsys, "memory", "--model", "llama-2-70b", "--batch", "1", "--gpu", "a100")
    assert none["max_context"] == 0 and not none["fits"]  # 138 GB of weights: not one token


def test_one_kv_cache_definition(capsys):
    """A decode step at context 8192, batch 2: every command holds the cache after the
    step, 2·8193·131072 bytes, and labels the context 8192."""
    expected = 2 * 8193 * KV_PER_TOKEN
    step = ["--model", "llama-3-8b", "--batch", "2", "--context", "8192"]
    (formula,), _ = _run(capsys, "formula", "kv-cache", *step)
    (sweep,), _ = _run(capsys, "sweep", "--metric", "kv_cache_bytes", *step)
    from perfmodel import api
    from perfmodel.options import Options
    from perfmodel.presets import load_model
    from perfmodel.scenario import Scenario

    kv = api.kv_cache(Scenario(load_model("llama-3-8b"), Options(phase="decode"), batch=2, context=8192)).iloc[0]
    assert formula["value"] == sweep["value"] == kv["kv_cache_bytes"] == expected
    assert (sweep["context"], kv["context"], kv["tokens_cached"]) == (8192, 8192, 8193)


def test_balance_below_one_sequence_is_not_a_solution(capsys):
    """2048 tokens a step (speculative/chunked): at batch 1 compute already takes
    2·8.03e9·2048 / 989.5e12 = 33 ms against 16.06e9 / 3.35e12 = 4.8 ms of weight reads,
    so no batch of one or more sequences balances."""
    (row,), _ = _run(capsys, "balance", "--model", "llama-3-8b", "--gpu", "h100", "--seq", "2048")
    assert row["balance_batch"] is None
    assert row["reason"].startswith("compute-bound at every batch: compute and memory time meet at batch 0.")


LLAMA_FILE_KEYS = set(preset_config("llama-3-8b"))


@pytest.fixture(scope="module")
def llama_fields():
    """The fields transformers' LlamaConfig knows (an independent list)."""
    transformers = pytest.importorskip("transformers")
    return set(transformers.LlamaConfig().to_dict()) | LLAMA_FILE_KEYS


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.from_regex(r"[a-z][a-z0-9_.]{0,24}", fullmatch=True))
def test_any_unknown_set_key_is_refused(capsys, llama_fields, key):
    if key in llama_fields:
        return
    with pytest.raises(SystemExit) as done:
        main(["params", "--model", "llama-3-8b", "--set", f"{key}=1"])
    captured = capsys.readouterr()
    assert done.value.code == 2 and captured.out == ""
    assert captured.err.startswith(f"error: --set {key}: unknown field for model_type 'llama'; ") and captured.err.count("\n") == 1


READ_BY_LLAMA = ["hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
                 "vocab_size", "tie_word_embeddings", "attention_bias", "hidden_act", "mlp_bias"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(READ_BY_LLAMA), data=st.data())
def test_a_one_letter_typo_suggests_the_field(capsys, llama_fields, field, data):
    i = data.draw(st.integers(0, len(field) - 1))
    typo = field[:i] + field[i + 1:]
    if typo in llama_fields or not typo:
        return
    with pytest.raises(SystemExit):
        main(["params", "--model", "llama-3-8b", "--set", f"{typo}=1"])
    err = capsys.readouterr().err
    assert "did you mean" in err and field in err.split("did you mean", 1)[1].split("?")[0]
