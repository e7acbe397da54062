"""Memory per GPU on a layout for `memory`, `compare` and `sweep`: figures derived by hand
from the models' config.json (perfmodel/presets), with Megatron's sharding.

Llama-3-8B: h=4096, 32 layers, 32 query / 8 KV heads of 128, FFN 14336, vocabulary
128256, untied head: 8,030,261,248 parameters. Llama-3.1-70B: h=8192, 80 layers, 64 / 8
heads, FFN 28672, vocabulary 128256, untied head."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from perfmodel import cli


def _run(args):
    res = CliRunner().invoke(cli.cli, args + ["--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _layer_params_per_gpu(h, kv, ffn, tp):
    """q and o (h x h), k and v (h x kv*128), gate/up/down (h x ffn) split over tp; the
    two RMSNorm weights (h each) whole on every rank."""
    return (2 * h * h + 2 * h * kv * 128 + 3 * h * ffn) // tp + 2 * h


def test_memory_inference_on_tp4_pp2_holds_the_last_stage():
    # Llama-3.1-70B, tp=4, pp=2: stage 1 holds layers 40-79, the final norm and the head
    # (128256 x 8192 / 4): 8,819,712,000 parameters, 2 bytes each; its KV cache: 40 layers
    # x K and V x 2 KV heads per GPU x 128 x 4096 tokens x 8 sequences x 2 bytes.
    row = _run(["memory", "--model", "llama-3.1-70b", "--context", "4096", "--batch", "8", "--tp", "4", "--pp", "2",
                "--gpu", "h100"])[0]
    params = 40 * _layer_params_per_gpu(8192, 8, 28672, 4) + 128256 * 8192 // 4 + 8192
    assert params == 8_819_712_000
    assert row["weights_bytes_per_gpu"] == 2 * params
    assert row["kv_cache_bytes_per_gpu"] == 40 * 2 * 2 * 128 * 4096 * 8 * 2
    assert row["stage"] == 1 and (row["tp"], row["pp"], row["gpus"]) == (4, 2, 8)
    assert row["memory_per_gpu_bytes"] == pytest.approx(row["weights_bytes_per_gpu"] + row["kv_cache_bytes_per_gpu"]
                                                        + row["activation_bytes_per_gpu"])
    assert row["capacity_per_gpu_bytes"] == 80 * 2**30 and row["fits"] is True


def test_memory_inference_splits_the_batch_over_dp():
    one = _run(["memory", "--model", "llama-3-8b", "--context", "2048", "--batch", "4", "--tp", "2"])[0]
    dp2 = _run(["memory", "--model", "llama-3-8b", "--context", "2048", "--batch", "8", "--tp", "2", "--dp", "2"])[0]
    # each replica: 4 sequences; KV 32 layers x 2 x 4 heads per GPU x 128 x 2048 x 4 x 2 bytes
    assert dp2["kv_cache_bytes_per_gpu"] == one["kv_cache_bytes_per_gpu"] == 32 * 2 * 4 * 128 * 2048 * 4 * 2


@pytest.mark.parametrize("zero, weights, grads, optimizer", [
    # ZeRO (Rajbhandari et al. §5): 2 + 2 + 12 bytes per parameter; stage 1 divides the
    # 12 over dp=8, stage 2 also the gradients, stage 3 also the weights
    (1, 2 * 8_030_261_248, 2 * 8_030_261_248, 12 * 8_030_261_248 / 8),
    (2, 2 * 8_030_261_248, 2 * 8_030_261_248 / 8, 12 * 8_030_261_248 / 8),
    (3, 2 * 8_030_261_248 / 8, 2 * 8_030_261_248 / 8, 12 * 8_030_261_248 / 8),
])
def test_memory_training_on_dp8_by_zero_stage(zero, weights, grads, optimizer):
    row = _run(["memory", "--model", "llama-3-8b", "--phase", "train", "--seq", "2048", "--dp", "8",
                "--zero", str(zero), "--gpu", "h100"])[0]
    assert (row["weights_bytes_per_gpu"], row["gradient_bytes_per_gpu"], row["optimizer_bytes_per_gpu"]) == \
        pytest.approx((weights, grads, optimizer))
    # data parallelism does not split a micro-batch: the activations are one GPU's
    single = _run(["memory", "--model", "llama-3-8b", "--phase", "train", "--seq", "2048"])[0]
    assert row["activation_bytes_per_gpu"] == pytest.approx(single["activation_bytes"])
    assert row["zero"] == zero and row["fits"] is True


def test_compare_reports_memory_and_fits_per_gpu():
    # Llama-3-8B, tp=4: 32 layers + embedding and head (128256 x 4096 / 4 each) + final
    # norm = 2,007,764,992 parameters per GPU; KV at context 2048, batch 1:
    # 32 x 2 x 2 heads x 128 x 2048 x 2 bytes
    rows = _run(["compare", "--model", "llama-3-8b", "--model", "llama-3.1-70b", "--gpu", "h100", "--tp", "4"])
    eight = rows[0]
    params = 32 * _layer_params_per_gpu(4096, 8, 14336, 4) + 2 * 128256 * 4096 // 4 + 4096
    assert params == 2_007_764_992
    assert eight["weights_bytes_per_gpu"] == 2 * params
    assert eight["kv_cache_bytes_per_gpu"] == 32 * 2 * 2 * 128 * 2048 * 2
    assert eight["weights_bytes"] == 2 * 8_030_261_248  # the whole model stays beside it
    # 70B: 141 GB of weights do not fit one H100, a quarter of them does
    seventy = rows[1]
    assert seventy["fits"] is True and seventy["memory_per_gpu_bytes"] < 80 * 2**30 < seventy["total_bytes"]


def test_sweep_per_gpu_kv_cache():
    rows = _run(["sweep", "--model", "llama-3-8b", "--phase", "decode", "--metric", "kv_cache_bytes", "--batch", "2,4",
                 "--context", "1024", "--tp", "2", "--dp", "2", "--gpu", "h100"])
    # per replica batch/2 sequences holding 1024 + 1 tokens; 4 KV heads per GPU
    assert [r["value"] for r in rows] == [32 * 2 * 4 * 128 * 1025 * (b // 2) * 2 for b in (2, 4)]
    assert all(r["tp"] == 2 and r["dp"] == 2 and r["fits"] for r in rows)
    assert all(r["memory_per_gpu_bytes"] > r["value"] for r in rows)


@pytest.mark.parametrize("args, message", [
    (["memory", "--model", "llama-3-8b", "--tp", "3"], "error: tp=3 does not divide num_attention_heads=32"),
    (["memory", "--model", "llama-3-8b", "--zero", "2"],
     "error: --zero: shards model states over data-parallel ranks; give a layout (--dp, --gpus, ...)"),
    (["memory", "--model", "llama-3-8b", "--dp", "2", "--zero", "1"],
     "error: --zero: only a training step has gradients and optimizer states (--phase train)"),
    (["memory", "--model", "llama-3-8b", "--tp", "2", "--gpus", "3"], "error: gpus=3 is not tp*pp*cp*dp = 2*1*1*1 = 2"),
    (["compare", "--model", "llama-3-8b", "--gpu", "h100", "--pp", "40"],
     "error: model 'llama-3-8b': pp=40 exceeds num_hidden_layers=32"),
    (["sweep", "--model", "llama-3-8b", "--metric", "kv_cache_bytes", "--batch", "3", "--dp", "2"],
     "error: batch: 3 is not divisible by dp=2 (each replica runs batch/dp)"),
    (["sweep", "--model", "llama-3-8b", "--metric", "time_s", "--tp", "2", "--gpu", "h100"],
     "error: sweep: time_s on a layout needs its communication timed; use `request` with the layout (memory, "
     "parameter and FLOP quantities sweep per GPU)"),
])
def test_cli_errors_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(args)
    assert done.value.code == 2
    out = capsys.readouterr()
    assert (out.out + out.err).strip().splitlines() == [message]
