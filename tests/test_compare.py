"""``perfmodel compare``: KV-cache ratios of attention variants derived by hand from the
head counts in the configs; every figure of a row equal to what the single-model
command (``params``, ``kv-cache``, ``memory``, ``roofline``, ``balance``) prints for
that model alone; bad input as one ``error:`` line, exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perfmodel.cli import main
from perfmodel.comparison import Variant, parse_variant
from perfmodel.presets import preset_path


def _json(capsys, *args: str) -> list[dict]:
    """A command's JSON records, run in-process through the CLI entry point."""
    main([*args, "--format", "json"])
    return json.loads(capsys.readouterr().out)


def test_gqa8_against_mha_is_exactly_8(capsys):
    """llama-2-70b config.json: 64 query heads, 8 KV heads (GQA-8). The MHA variant keeps
    64 K/V heads, all else equal, so it caches 64/8 = 8 times the bytes per token."""
    rows = _json(capsys, "compare", "--model", "GQA-8=llama-2-70b", "--model", "MHA=llama-2-70b:num_key_value_heads=64", "--gpu", "h100", "--context", "4k")
    gqa, mha = rows
    assert (gqa["model"], mha["model"]) == ("GQA-8", "MHA")
    assert mha["kv_cache_bytes_per_token_vs_first"] == 8
    assert mha["kv_cache_bytes_vs_first"] == 8
    assert mha["kv_cache_bytes"] == 8 * gqa["kv_cache_bytes"]
    # 80 layers x 8 KV heads x 128 dims x K and V x 2 bytes
    assert gqa["kv_cache_bytes_per_token"] == 80 * 8 * 128 * 2 * 2


def test_mha_gqa_mqa_of_llama_3_8b(capsys):
    """llama-3-8b: 32 query heads, 8 KV heads. MHA (32) caches 4x, MQA (1) 1/8 of GQA-8;
    per token 32 layers x 8 heads x 128 dims x 2 (K, V) x 2 bytes = 131072."""
    rows = _json(
        capsys,
        "compare",
        "--model", "llama-3-8b",
        "--model", "MHA=llama-3-8b:num_key_value_heads=32",
        "--model", "llama-3-8b:num_key_value_heads=1",
        "--gpu", "h100", "--context", "32k", "--batch", "4",
    )  # fmt: skip
    assert [r["model"] for r in rows] == ["llama-3-8b", "MHA", "llama-3-8b:num_key_value_heads=1"]
    assert [r["kv_cache_bytes_per_token"] for r in rows] == [131072, 4 * 131072, 131072 // 8]
    assert [r["kv_cache_bytes_per_token_vs_first"] for r in rows] == [1, 4, 0.125]
    assert rows[0]["kv_cache_bytes"] == 4 * 32768 * 131072
    # fewer K/V heads also means smaller k_proj/v_proj: 2 x 32 layers x 4096 x 128 per KV head
    assert rows[0]["total_params"] - rows[2]["total_params"] == 2 * 32 * 4096 * 128 * 7
    assert all(type(r["total_params"]) is int and type(r["max_batch"]) is int for r in rows)


def test_rows_agree_with_single_model_commands(capsys):
    """One source of truth: a dense model and an MoE (MLA) model, each row against the
    commands run for that model alone."""
    context, batch = "8k", "2"
    rows = _json(capsys, "compare", "--model", "llama-3-8b", "--model", "deepseek-v2-lite", "--gpu", "h100", "--context", context, "--batch", batch)
    for row in rows:
        m = ["--model", row["model"]]
        params = _json(capsys, "params", *m)[0]
        kv = _json(capsys, "kv-cache", *m, "--context", context, "--batch", batch)[0]
        mem = _json(capsys, "memory", *m, "--context", context, "--batch", batch, "--gpu", "h100", "--mla", "absorbed")[0]
        decode = _json(capsys, "roofline", *m, "--gpu", "h100", "--phase", "decode", "--by", "total", "--context", context, "--batch", batch)[0]
        prefill = _json(capsys, "roofline", *m, "--gpu", "h100", "--phase", "prefill", "--by", "total", "--seq", context)[0]
        bal = _json(capsys, "balance", *m, "--gpu", "h100", "--context", context)[0]
        assert row["total_params"] == params["total_params"]
        assert row["active_params"] == params["active_params"]
        assert row["kv_cache_bytes_per_token"] == kv["kv_cache_bytes_per_token"]
        assert row["kv_cache_bytes"] == kv["kv_cache_bytes"] == mem["kv_cache_bytes"]
        for column in ("weights_bytes", "total_bytes", "fits", "max_batch"):
            assert row[column] == mem[column], column
        assert row["decode_time_s"] == decode["time_s"]
        assert row["decode_tokens_per_s"] == decode["tokens_per_s"]
        assert row["prefill_time_s"] == prefill["time_s"]
        assert row["balance_batch"] == bal["balance_batch"]
        assert row["balance_batch_weights_only"] == bal["balance_batch_weights_only"]
    dense, moe = rows
    # CLI.md: active equals total for a dense model; an MoE runs k of E routed experts
    assert dense["active_params"] == dense["total_params"]
    assert moe["active_params"] < moe["total_params"]
    assert moe["active_params_vs_first"] == moe["active_params"] / dense["active_params"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("llama-3-8b", Variant("llama-3-8b", "llama-3-8b", {})),
        ("MQA=llama-3-8b:num_key_value_heads=1", Variant("MQA", "llama-3-8b", {"num_key_value_heads": 1})),
        (
            "llama-3-8b:num_key_value_heads=1,rope_theta=1e6,note=a,b",
            Variant("llama-3-8b:num_key_value_heads=1,rope_theta=1e6,note=a,b", "llama-3-8b", {"num_key_value_heads": 1, "rope_theta": 1e6, "note": "a,b"}),
        ),
        ("x=mixtral-8x7b:layer_types=[1, 2]", Variant("x", "mixtral-8x7b", {"layer_types": [1, 2]})),
    ],
)
def test_parse_variant(spec, expected):
    assert parse_variant(spec) == expected


def test_config_path_with_label(tmp_path):
    """A config.json path (whose folder name holds '=' and ':') needs no escaping."""
    folder = tmp_path / "a=b:c"
    folder.mkdir()
    path = folder / "config.json"
    path.write_text(preset_path("gpt2").read_text())
    assert parse_variant(str(path)) == Variant(str(path), str(path), {})
    assert parse_variant(f"small={path}:n_layer=2") == Variant("small", str(path), {"n_layer": 2})


def _error(capsys, *args: str) -> str:
    """The one stderr line of a refused command run in-process (exit status 2)."""
    with pytest.raises(SystemExit) as done:
        main(["compare", *args])
    assert done.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error:"), captured.err
    return lines[0]


@pytest.mark.parametrize(
    "models, message",
    [
        (["llama-3-8b", "bad=llama-3-8b:num_key_value_heads=5"], "model 'bad': "),  # 32 heads not divisible by 5
        (["llama-3-8b", "gpt2"], "model 'gpt2': "),  # GPT-2 has 1024 learned positions, --context 32k
        (["llama-3-8b", "llama-3-8b"], "listed twice"),
        (["llama-3-8b:"], "expected MODEL:KEY=VALUE"),
    ],
)
def test_bad_models(capsys, models, message):
    args = [a for m in models for a in ("--model", m)]
    assert message in _error(capsys, *args, "--gpu", "h100", "--context", "32k")


def test_unloadable_model_in_a_subprocess():
    """The installed command itself: one ``error:`` line naming the model, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "perfmodel", "compare", "--model", "llama-3-8b", "--model", "llama-9b", "--gpu", "h100"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'llama-9b': unknown model"), result.stderr
