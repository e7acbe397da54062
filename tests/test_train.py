"""Training on a parallel layout, against the papers' own figures and formulas.

- ZeRO (Rajbhandari et al. 2019, Figure 1 / §5): 7.5B parameters, 64 GPUs, mixed-precision
  Adam (K = 12): 120 GB per GPU baseline; 31.4 GB with P_os (ZeRO-1), 16.6 GB with
  P_os+g (ZeRO-2), 1.9 GB with P_os+g+p (ZeRO-3).
- Korthikanti et al. 2022, Table 2: activations per layer with tensor parallelism t:
  sbh(10 + 24/t + 5as/(ht)); with sequence parallelism sbh(34/t + 5as/(ht)); selective
  recomputation with sequence parallelism 34·sbh/t.
- Narayanan et al. 2021, §2.2: 1F1B pipeline time (m + p − 1)·(t_f + t_b), bubble fraction
  (p − 1)/m; interleaved with v chunks (p − 1)/(v·m).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
from hardware.catalog import get_accelerator
from perfmodel.evaluate import bindings, value
from perfmodel.layout import Layout
from perfmodel.memory import memory
from perfmodel.options import Options
from perfmodel.scenario import Scenario
from perfmodel.sharding import shard
from perfmodel.table import build
from perfmodel.train import iteration, make_layout, model_state_bytes, stage_costs
from tests.test_layout import LLAMA
from tests.test_memory import PAPER, gpt

H100 = get_accelerator("h100-sxm")


@pytest.mark.parametrize("zero, gigabytes", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_worked_example(zero, gigabytes):
    states = model_state_bytes(7_500_000_000, 0, "mixed", 2, Layout(dp=64, zero=zero))
    assert sum(states.values()) / 1e9 == pytest.approx(gigabytes, abs=0.05)


def _per_layer_activations(h, a, b, s, layout, **options):
    def total(layers):
        arch = gpt(h, a, layers)
        table = shard(build(arch, Options(**{**PAPER, **options})), layout)
        return value(memory(table)["activation_bytes"], bindings(arch, b=b, s=s, t=0))

    return total(3) - total(2)


@pytest.mark.parametrize("h, a, b, s, t", [(768, 12, 2, 512, 4), (12288, 96, 1, 2048, 8)])
def test_korthikanti_activations_with_tensor_and_sequence_parallelism(h, a, b, s, t):
    sbh = s * b * h
    attention = 5 * a * s * s * b // t  # 5as/(ht) · sbh
    assert _per_layer_activations(h, a, b, s, Layout(tp=t)) == 10 * sbh + 24 * sbh // t + attention
    sp = Layout(tp=t, sequence_parallel=True)
    assert _per_layer_activations(h, a, b, s, sp) == 34 * sbh // t + attention
    assert _per_layer_activations(h, a, b, s, sp, recompute="selective") == 34 * sbh // t


def _sc(arch=LLAMA, recompute="selective"):
    return Scenario(arch, Options(phase="train", recompute=recompute), seq=2048, accelerator=H100)


@pytest.mark.parametrize("schedule, v", [("1f1b", 1), ("interleaved", 2)])
def test_pipeline_time_and_bubble_follow_narayanan(schedule, v):
    # one data-parallel rank (no gradient sync): step(m) = (m + (p-1)/v)·T + optimizer
    p = 4
    steps = {}
    for m in (8, 16):
        layout = Layout(pp=p, schedule=schedule, v=v, micro_batches=m)
        steps[m] = iteration(_sc(), layout)
        assert steps[m]["bubble_fraction"] == pytest.approx((p - 1) / (v * m))
    per_micro_batch = (steps[16]["step_time_s"] - steps[8]["step_time_s"]) / 8
    layout = Layout(pp=p, schedule=schedule, v=v, micro_batches=8)
    optimizer = max(stage_costs(_sc().but(batch=1), layout, i, __import__("perfmodel.cost").cost.Fusion())["optimizer_s"]
                    for i in range(p))
    fill_drain = steps[8]["step_time_s"] - 8 * per_micro_batch - optimizer
    assert fill_drain == pytest.approx((p - 1) / v * per_micro_batch, rel=1e-9)


def test_mfu_counts_the_table_flops_and_run_totals():
    row = iteration(_sc(), Layout(tp=8, dp=2, gpus_per_node=8, micro_batches=4, sequence_parallel=True, zero=1))
    # 6N counts every parameter (8,030,261,248 for Llama-3-8B), the table the matrix
    # products: 6 x (N - the 128256 x 4096 lookup table, which does no matmul) plus attention
    non_embedding = (8_030_261_248 - 128256 * 4096) / 8_030_261_248
    assert row["mfu_6n"] * non_embedding < row["mfu"] < row["hfu"]
    assert row["tokens_per_s_per_gpu"] == pytest.approx(8 * 2048 / row["step_time_s"] / 16)
    assert 0 < row["mfu"] < 1 and row["fits"]


def test_cli_train_columns_and_errors():
    runner = CliRunner()
    args = ["train", "--model", "llama-3-8b", "--gpu", "h100", "--gpus", "16", "--tp", "8", "--global-batch", "32",
            "--seq", "2048", "--tokens", "1e12", "--format", "json"]
    res = runner.invoke(cli.cli, args)
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)[0]
    for col in ("step_time_s", "tokens_per_s_per_gpu", "mfu", "hfu", "memory_per_gpu_bytes", "fits",
                "bubble_fraction", "exposed_communication_s", "wall_clock_days", "gpu_hours"):
        assert col in row
    assert row["dp"] == 2 and row["wall_clock_days"] == pytest.approx(1e12 / row["tokens_per_s"] / 86400)
    assert row["gpu_hours"] == pytest.approx(row["wall_clock_days"] * 24 * 16)


@pytest.mark.parametrize("kw, message", [
    (dict(gpus=12, tp=8), "gpus=12 is not a multiple of tp*pp*cp = 8*1*1 = 8"),
    (dict(gpus=16, tp=8, global_batch=3), "global-batch: 3 is not a multiple of dp*micro_batch = 2*1 = 2"),
    (dict(gpus=64, pp=64), "pp=64 exceeds num_hidden_layers=32"),
])
def test_bad_training_layouts(kw, message):
    with pytest.raises(Exception) as err:
        make_layout(LLAMA, H100, **kw)
    assert str(err.value) == message
