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

from perfmodel import cli
from perfmodel.hardware.catalog import get_accelerator
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


def test_tp_comm_overlap_hides_the_tp_collectives_under_compute():
    """One stage (pp=1, dp=1): step = m·(compute + exposed) + optimizer. With the TP
    collectives overlapped and shorter than the compute they hide under, each micro-batch
    saves exactly its TP time: the steps differ by m·T_tp."""
    from perfmodel.cost import Fusion
    from perfmodel.train import Overlap

    layout = Layout(tp=8, micro_batches=4, sequence_parallel=True)
    plain, hidden = (iteration(_sc(), layout, overlap=Overlap(tp_comm=on)) for on in (False, True))
    c = stage_costs(_sc().but(batch=1), layout, 0, Fusion())
    assert 0 < c["comm_s"]["tp"] < c["fwd_s"] + c["bwd_s"]
    assert plain["step_time_s"] - hidden["step_time_s"] == pytest.approx(4 * c["comm_s"]["tp"], rel=1e-9)
    assert hidden["exposed_communication_s"] < plain["exposed_communication_s"]


def test_p2p_overlap_only_in_the_interleaved_schedule():
    """Megatron overlaps pipeline sends with compute only in the interleaved schedule."""
    from perfmodel.train import Overlap

    assert Overlap().hidden_axes(Layout(pp=2, micro_batches=2)) == ()
    assert Overlap().hidden_axes(Layout(pp=2, v=2, schedule="interleaved", micro_batches=2)) == ("pp",)
    assert Overlap(tp_comm=True, ep_comm=True, p2p=False).hidden_axes(Layout(pp=2, micro_batches=2)) == ("tp", "ep")


def test_fp8_training_runs_the_linears_in_fp8_and_keeps_bf16_activations():
    """Transformer Engine FP8: the linear layers' GEMMs run FP8, the LM head, router and
    attention core BF16; activations (memory) and messages stay BF16."""
    from perfmodel.cost import Kernel
    from perfmodel.train import kernel_dtype

    assert kernel_dtype(Kernel("gemm", "attn.q_proj+attn.k_proj+attn.v_proj", {}, 1), "fp8") == "fp8"
    assert kernel_dtype(Kernel("gemm", "moe.experts.gate_up_proj", {}, 1), "fp8") == "fp8"
    assert kernel_dtype(Kernel("gemm", "lm_head", {}, 1), "fp8") == "bf16"
    assert kernel_dtype(Kernel("gemm", "moe.router", {}, 1), "fp8") == "bf16"
    assert kernel_dtype(Kernel("attention", "attn.core.fwd", {}, 1), "fp8") == "bf16"
    assert kernel_dtype(Kernel("gemm", "lm_head", {}, 1), "bf16") == "bf16"
    layout = Layout(tp=2, micro_batches=2, sequence_parallel=True)
    bf16, fp8 = (iteration(_sc().but(act_dtype=d, kv_dtype=d), layout) for d in ("bf16", "fp8"))
    assert fp8["activation_bytes_per_gpu"] == bf16["activation_bytes_per_gpu"]
    assert fp8["exposed_communication_s"] == pytest.approx(bf16["exposed_communication_s"])
    assert fp8["step_time_s"] < bf16["step_time_s"]


def test_cli_train_uneven_pipeline_split():
    runner = CliRunner()
    base = ["train", "--model", "llama-3-8b", "--gpu", "h100", "--gpus", "4", "--pp", "4", "--global-batch", "8",
            "--seq", "2048", "--format", "json"]
    res = runner.invoke(cli.cli, base + ["--first-stage-layers", "6", "--last-stage-layers", "6"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["layers_per_stage"] == "6,10,10,6"
    # embedding and loss counted as layers, pp=2 (Megatron-Core's divisible case): 34 slots,
    # 17 a rank, the embedding and the loss take one each: 16 decoder layers on both
    two = ["--gpus", "2", "--pp", "2", "--embedding-in-split", "--loss-in-split"]
    res = runner.invoke(cli.cli, base[:5] + base[9:] + two)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["layers_per_stage"] == "16,16"
    # 34 slots over pp*v = 4*8 = 32 virtual stages: stages 0 and 1 get 2 slots, the rest 1;
    # stage 0 gives one to the embedding, stage 31 its one to the loss. Rank r holds
    # stages r, r+4, ..., r+28: rank 0 1+7 = 8, rank 1 2+7 = 9, rank 2 8, rank 3 7+0 = 7
    res = runner.invoke(cli.cli, base + ["--interleave", "8", "--embedding-in-split", "--loss-in-split"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["layers_per_stage"] == "8,9,8,7"


def test_training_split_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--model", "llama-3-8b", "--gpu", "h100", "--gpus", "4", "--pp", "4", "--global-batch", "8",
                  "--first-stage-layers", "30", "--last-stage-layers", "5"])
    out = capsys.readouterr()
    assert done.value.code == 2
    assert (out.out + out.err).strip().splitlines() == [
        "error: first_stage_layers=30 + last_stage_layers=5 exceeds num_hidden_layers=32"]


def test_fp8_casts_by_hand():
    """Transformer Engine casts each FP8 linear's operands into row- and column-wise FP8
    copies (read 2 bytes in BF16, write 1 + 1). Llama-3-8B, one token of one layer, QKV and
    gate/up merged as Megatron-Core runs them: inputs 4096 (QKV) + 4096 (o) + 4096 (gate/up)
    + 14336 (down) = 26,624 elements forward; output gradients 6144 + 4096 + 28672 + 4096
    = 43,008 backward; weights 4096·(6144 + 4096 + 28672) + 14336·4096 = 218,103,808 once
    per iteration. The LM head stays BF16: no cast."""
    from perfmodel.cost import Fusion
    from perfmodel.train import fp8_casts

    ops = build(LLAMA, Options(phase="train", recompute="none")).ops
    values = bindings(LLAMA, b=1, s=1, t=0)
    fwd, bwd, once = fp8_casts(ops, Fusion())

    def per_layer(rows):
        assert {value(op.repeat, values) for op in rows} == {32}
        return sum(value(op.bytes, values) for op in rows)

    assert per_layer(fwd) == 26_624 * 4
    assert per_layer(bwd) == 43_008 * 4
    assert per_layer(once) == 218_103_808 * 4


def test_optimizer_step_follows_the_zero_shard():
    """ZeRO-1 shards the optimizer states over dp (Rajbhandari et al. 2019 §5.1): the same
    model and tp/pp on 4x the data-parallel ranks updates a quarter of the parameters per
    GPU, so its optimizer step (a memory-bound pass over the shard) takes a quarter as long,
    less the fixed kernel times. Computed for dp = 2 first, then dp = 8 (one cache)."""
    from perfmodel.cost import Fusion

    sc = _sc().but(batch=1)
    small, large = (stage_costs(sc, Layout(tp=2, dp=dp, zero=1, gpus_per_node=2 * dp), 0, Fusion())["optimizer_s"]
                    for dp in (2, 8))
    assert large < small / 3
