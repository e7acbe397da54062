"""`perfmodel attention`: one attention kernel call predicted on the roofline.

Independent sources:
- The FlashAttention FLOP convention (hw-notes §3; FA2 paper §4.1, FA3 paper §4.1 and
  hopper/benchmark_attn.py): matmuls only; forward 4·B·S²·H·D, halved when causal;
  backward 2.5× forward; forward + backward 3.5×; the general form
  2·B·H·Sq·avg_Sk·(D_qk + D_v) with avg_Sk = (max(0, Sk − Sq) + Sk)/2 when causal;
  GQA counted with the query heads.
- A fused (FlashAttention) forward moves Q, K, V in and O out once: bytes
  = (B·Sq·H·D + 2·B·Sk·H_kv·D + B·Sq·H·D) · bytes per element.
- Softmax work is not in the FLOPs above but the model charges it as elementwise
  work, 5 FLOPs per visible score (max, subtract, exp, sum, divide: the convention in
  perfmodel/ops/base.py), at the non-tensor rate.
- NVIDIA H100 datasheet, SXM column: BF16 1,979* TFLOPS with sparsity -> 989.5 dense;
  FP32 67 TFLOPS; HBM3 3.35 TB/s.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from perfmodel.cli import main
from perfmodel.hardware.catalog import get_accelerator
from perfmodel import api

PEAK, VECTOR, BW = Fraction(1979, 2) * 10**12, 67 * 10**12, 3350 * 10**9  # H100 SXM datasheet
H100 = get_accelerator("h100-sxm")


def call(**shape):
    return api.attention_call(H100, **shape).iloc[0]


def fa_flops(B, H, D, Sq, Sk, causal) -> Fraction:
    """FA3 benchmark_attn.py: 2·B·H·Sq·avg_Sk·(D_qk + D_v)."""
    avg = Fraction(max(0, Sk - Sq) + Sk, 2) if causal else Sk
    return 2 * B * H * Sq * avg * (D + D)


def fused_bytes(B, H, H_kv, D, Sq, Sk, element=2) -> int:
    return (B * Sq * H * D + 2 * B * Sk * H_kv * D + B * Sq * H * D) * element


def test_prefill_is_compute_bound():
    # B=4, H=32 query heads, 8 KV heads, D=128, S=4096, causal, bf16 forward.
    B, H, H_kv, D, S = 4, 32, 8, 128, 4096
    flops = Fraction(4 * B * S * S * H * D, 2)  # FA2 convention, causal halves
    assert flops == fa_flops(B, H, D, S, S, True) == 549_755_813_888
    nbytes = fused_bytes(B, H, H_kv, D, S, S)  # Q 134 MB + K, V 33.5 MB each + O 134 MB
    assert nbytes == 335_544_320
    compute = flops / PEAK + Fraction(5 * B * H * S * S, 2) / VECTOR  # 555.6 µs + 80.1 µs
    memory = Fraction(nbytes, BW)  # 100.2 µs
    row = call(batch=B, heads=H, kv_heads=H_kv, head_dim=D, seq_q=S, seq_kv=S, causal=True)
    assert row["flops"] == flops and row["bytes"] == nbytes
    assert row["bound"] == "compute"
    assert row["predicted_s"] == pytest.approx(float(max(compute, memory)), rel=1e-12)
    assert row["predicted_tflops_per_s"] == pytest.approx(float(flops / max(compute, memory)) / 1e12, rel=1e-12)


def test_decode_is_memory_bound():
    # B=8, one query token against 8192 keys, GQA 32/8 heads, D=128, causal, bf16.
    B, H, H_kv, D, Sq, Sk = 8, 32, 8, 128, 1, 8192
    flops = fa_flops(B, H, D, Sq, Sk, True)  # avg_Sk = (8191 + 8192)/2
    assert flops == 1_073_676_288
    nbytes = fused_bytes(B, H, H_kv, D, Sq, Sk)  # the K and V cache dominate: 268.4 MB
    assert nbytes == 268_566_528
    compute = flops / PEAK + 5 * B * H * Sq * Fraction(8191 + 8192, 2) / VECTOR
    memory = Fraction(nbytes, BW)  # 80.17 µs
    row = call(batch=B, heads=H, kv_heads=H_kv, head_dim=D, seq_q=Sq, seq_kv=Sk, causal=True)
    assert row["flops"] == flops and row["bytes"] == nbytes
    assert row["bound"] == "memory"
    assert row["predicted_s"] == pytest.approx(float(memory), rel=1e-12)
    assert row["predicted_s"] == pytest.approx(80.169e-6, rel=1e-4)
    assert compute < memory


def test_non_causal_forward_and_the_backward_factors():
    # FA2: forward 4·B·S²·H·D; backward 2.5×; forward + backward 3.5×.
    shape = dict(batch=2, heads=16, kv_heads=16, head_dim=64, seq_q=1024, seq_kv=1024, causal=False)
    forward = 4 * 2 * 1024 * 1024 * 16 * 64
    assert call(**shape, pass_="fwd")["flops"] == forward
    assert call(**shape, pass_="bwd")["flops"] == Fraction(5, 2) * forward
    assert call(**shape, pass_="fwd_bwd")["flops"] == Fraction(7, 2) * forward


def test_queries_after_a_prefix_use_the_general_form():
    # Sq = 1000 queries at the end of Sk = 3000 keys, causal: avg_Sk = (2000 + 3000)/2 = 2500
    row = call(batch=1, heads=16, kv_heads=16, head_dim=128, seq_q=1000, seq_kv=3000, causal=True)
    assert row["flops"] == 2 * 16 * 1000 * 2500 * 256 == fa_flops(1, 16, 128, 1000, 3000, True)


def test_exact_causal_count_is_s_s_plus_1_over_2():
    # hw-notes §3: the exact causal count is S(S+1)/2 pairs per head, 4·D FLOPs each
    row = call(batch=1, heads=8, kv_heads=8, head_dim=128, seq_q=512, seq_kv=512, causal=True, causal_count="exact")
    assert row["flops"] == 4 * 8 * 128 * 512 * 513 // 2


def test_gqa_changes_bytes_not_flops():
    shape = dict(batch=1, heads=32, head_dim=128, seq_q=2048, seq_kv=2048, causal=True)
    mha, mqa = call(**shape, kv_heads=32), call(**shape, kv_heads=1)
    assert mha["flops"] == mqa["flops"]
    assert mha["bytes"] == fused_bytes(1, 32, 32, 128, 2048, 2048)
    assert mqa["bytes"] == fused_bytes(1, 32, 1, 128, 2048, 2048)


def test_expected_time_applies_the_given_efficiencies():
    # expected = max(compute / e_c, memory / e_m): the prefill shape at e_c = 0.5 doubles
    # its compute time; the decode shape at e_m = 0.8 takes 1.25× its memory time.
    prefill = dict(batch=4, heads=32, kv_heads=8, head_dim=128, seq_q=4096, seq_kv=4096, causal=True)
    pure = call(**prefill)
    row = api.attention_call(H100, compute_efficiency=0.5, bandwidth_efficiency=1.0, **prefill).iloc[0]
    assert row["expected_s"] == pytest.approx(2 * pure["predicted_s"], rel=1e-12)
    decode = dict(batch=8, heads=32, kv_heads=8, head_dim=128, seq_q=1, seq_kv=8192, causal=True)
    pure = call(**decode)
    row = api.attention_call(H100, compute_efficiency=1.0, bandwidth_efficiency=0.8, **decode).iloc[0]
    assert row["expected_s"] == pytest.approx(1.25 * pure["predicted_s"], rel=1e-12)


def test_the_command_line_prints_the_same(capsys):
    main(["attention", "--gpu", "h100-sxm", "--batch", "8", "--heads", "32", "--kv-heads", "8",
          "--seq-q", "1", "--seq-kv", "8k", "--format", "json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert row["flops"] == 1_073_676_288 and row["bytes"] == 268_566_528 and row["bound"] == "memory"
    assert row["predicted_s"] == pytest.approx(268_566_528 / 3.35e12, rel=1e-12)


def test_zero_efficiency_is_refused_not_ignored(capsys):
    # An efficiency of 0 is a mistake, not "use the default".
    with pytest.raises(SystemExit) as exc:
        main(["attention", "--gpu", "h100-sxm", "--heads", "8", "--seq-q", "128", "--compute-efficiency", "0"])
    assert exc.value.code == 2
    # nor is one above 1: faster than the peak (issue 11)
    assert capsys.readouterr().err == "error: Invalid value for '--compute-efficiency': 0.0 is not in the range 0<x<=1.\n"
