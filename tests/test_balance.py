"""The decode balance batch: where a step's compute time equals its memory time.

The claim checked: "Llama 2 7B decoding on an A100 becomes compute-bound near batch
156 (312 TFLOP/s ÷ ~2 TB/s with 2-byte weights)". Each decoded token does 2 FLOPs per
weight it multiplies (a multiply and an add) and, at B_w bytes per weight, the weights
are read once per step whatever the batch, so compute = memory at
``2·b·P / peak = B_w·P / bw``, i.e. ``b* = (peak / bw) · (B_w / 2)``.

Independent sources, written out below:
- meta-llama/Llama-2-7b-hf config.json: d = 4096, d_ff = 11008, L = 32, 32 heads of
  128, 32 KV heads, vocab 32000, untied LM head; 6,738,415,616 parameters in all.
- NVIDIA A100 datasheet: BF16 312 TFLOPS dense (624* with sparsity); FP32 19.5 TFLOPS
  (the non-tensor rate the model uses for elementwise work); HBM bandwidth 2,039 GB/s
  (80GB SXM) and 1,555 GB/s (40GB).
- The elementwise-FLOP conventions stated once in perfmodel/ops/base.py
  (ELEMENTWISE_FLOPS: RMSNorm 4, RoPE 3, softmax 5, SiLU 4, add/multiply 1 per element);
  the test re-derives their sums by hand rather than reading them from the table.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest
from sympy import sqrt

from perfmodel.cli import main
from perfmodel.hardware.accelerator import Accelerator
from perfmodel.hardware.catalog import get_accelerator
from perfmodel import api
from perfmodel import symbols as S
from perfmodel.options import Options
from perfmodel.presets import load_model
from perfmodel.roofline import balance_batch, step_terms
from perfmodel.scenario import Scenario

T, G = 10**12, 10**9
PEAK, VECTOR = 312 * T, Fraction(39, 2) * T  # A100 datasheet: BF16 dense, FP32
d, d_ff, L, n_h, d_h, V = 4096, 11008, 32, 32, 128, 32000  # Llama-2-7b config.json


def a100_at(bandwidth_gb_s: int) -> Accelerator:
    """An A100 (312 TFLOP/s bf16, 19.5 fp32) with the given HBM bandwidth."""
    return Accelerator(name=f"A100 at {bandwidth_gb_s} GB/s", memory_bytes=80 * 2**30,
                       memory_bandwidth_bytes_per_s=bandwidth_gb_s * G,
                       peak_flops_per_s={"bf16": PEAK, "fp32": int(VECTOR)})


def scenario(acc, context: int, n_kv: int = 32, weight_dtype: str = "bf16", **kw) -> Scenario:
    overrides = {} if n_kv == 32 else {"num_key_value_heads": n_kv}
    return Scenario(load_model("llama-2-7b", overrides), Options(phase="decode"), batch=1, context=context,
                    weight_dtype=weight_dtype, accelerator=acc, **kw)


# ---------------------------------------------------------------- hand derivation


def matmul_params(n_kv: int = 32) -> int:
    """Weights multiplied per token: per layer q, o (d×d), k, v (d×n_kv·d_h), gate, up,
    down (d×d_ff); and the LM head (V×d)."""
    kv = n_kv * d_h
    return L * (2 * d * d + 2 * d * kv + 3 * d * d_ff) + V * d


NORM_PARAMS = (2 * L + 1) * d  # two RMSNorm weights per layer, one final


def test_the_parameter_count_adds_up():
    # matmul weights + norm weights + the embedding table = the published 6,738,415,616
    assert matmul_params() + NORM_PARAMS + V * d == 6_738_415_616


def weights_only_balance(bandwidth: int, B_w: Fraction = Fraction(2)) -> Fraction:
    """The textbook balance with the exact weight traffic: per step the matmul and norm
    weights are read once (B_w·(P_m + P_n) bytes) and each token reads one embedding
    row (B_w·d bytes); each token does 2·P_m matmul FLOPs. Solving
    ``2·b·P_m / peak = B_w·(P_m + P_n + b·d) / bw`` for b:
    ``b* = R·B_w·(P_m + P_n) / (2·P_m − R·B_w·d)`` with the ridge ``R = peak / bw``."""
    ridge = Fraction(PEAK, bandwidth)
    pm_ = matmul_params()
    return ridge * B_w * (pm_ + NORM_PARAMS) / (2 * pm_ - ridge * B_w * d)


def per_sequence(t: int, n_kv: int = 32) -> dict:
    """One sequence's decode-step cost at context ``t`` (its query sees t + 1 keys), by hand.

    Matmul FLOPs: 2 per multiplied weight, plus QKᵀ and PV, 2·n_h·d_h per key each.
    Vector FLOPs per layer: two RMSNorms (4 per element over d), RoPE on q and k (3 per
    element), softmax over n_h·(t+1) scores (5), SiLU and the gating multiply over d_ff
    (4 + 1), two residual adds (1 per element over d); plus the final RMSNorm.
    KV bytes: each key/value token is 2·n_kv·d_h elements per layer at 2 bytes; the
    step reads t + 1 of them and writes one.
    Activation bytes per layer (elements, 2 bytes each), every op reading its input
    and writing its output: norm d+d; q_proj d+d; k_proj, v_proj d+kv each; RoPE reads
    and writes q and k, 2·(d+kv); the cache write reads k and v, 2·kv; QKᵀ reads q, d;
    PV writes d; o_proj d+d; residual reads two, writes one, 3·d; FFN norm d+d; gate and
    up d+d_ff each; SiLU·gate reads two d_ff, writes one; down d_ff+d; residual 3·d.
    That is 23·d + 6·kv + 6·d_ff. Model-wide: the embedding writes d, the final norm
    d+d, the LM head reads d and writes V logits."""
    kv = n_kv * d_h
    kv_token = L * 2 * kv * 2
    return {
        "matmul_flops": 2 * matmul_params(n_kv) + L * 4 * n_h * d_h * (t + 1),
        "vector_flops": L * (4 * d + 3 * (d + kv) + 5 * n_h * (t + 1) + 5 * d_ff + 2 * d + 4 * d) + 4 * d,
        "kv_bytes": kv_token * (t + 1) + kv_token,
        "activation_bytes": 2 * (L * (23 * d + 6 * kv + 6 * d_ff) + d + 2 * d + d + V),
        "embedding_row_bytes": 2 * d,
    }


def hand_terms(bandwidth: int, t: int, n_kv: int = 32) -> tuple[Fraction, Fraction, Fraction]:
    """(memory time at b → 0, compute time per sequence, memory time per sequence)."""
    seq = per_sequence(t, n_kv)
    m0 = Fraction(2 * (matmul_params(n_kv) + NORM_PARAMS), bandwidth)
    c1 = Fraction(seq["matmul_flops"], PEAK) + seq["vector_flops"] / VECTOR
    m1 = Fraction(seq["kv_bytes"] + seq["activation_bytes"] + seq["embedding_row_bytes"], bandwidth)
    return m0, c1, m1


def hand_balance(bandwidth: int, t: int, n_kv: int = 32) -> Fraction | None:
    """b* from ``m0 + b·m1 = b·c1`` (nothing computes without a sequence): none when
    each added sequence brings at least as much memory time as compute time."""
    m0, c1, m1 = hand_terms(bandwidth, t, n_kv)
    return m0 / (c1 - m1) if c1 > m1 else None


def hand_context_limit(bandwidth: int, n_kv: int = 32) -> int:
    """The largest context t with c1(t) > m1(t); both are linear in t."""
    _, c_0, m_0 = hand_terms(bandwidth, 0, n_kv)
    _, c_1, m_1 = hand_terms(bandwidth, 1, n_kv)
    crossing = (c_0 - m_0) / ((m_1 - m_0) - (c_1 - c_0))
    return math.ceil(crossing) - 1


# ---------------------------------------------------------------- the table agrees with the hand counts


@pytest.mark.parametrize("t, n_kv", [(0, 32), (1000, 32), (4096, 1)])
def test_per_sequence_costs_match_the_hand_count(t, n_kv):
    # The table's cost at b = 1 and b = 2: the difference is one sequence's cost, and
    # 2·cost(1) − cost(2) what the step costs with no sequence at all (the weights).
    sc = scenario(get_accelerator("a100-80gb-sxm"), t, n_kv)
    one, two = (api.flops(sc.but(batch=b)).iloc[0] for b in (1, 2))
    seq = per_sequence(t, n_kv)
    assert two["matmul_flops"] - one["matmul_flops"] == seq["matmul_flops"]
    assert two["vector_flops"] - one["vector_flops"] == seq["vector_flops"]
    assert two["bytes"] - one["bytes"] == seq["kv_bytes"] + seq["activation_bytes"] + seq["embedding_row_bytes"]
    assert 2 * one["bytes"] - two["bytes"] == 2 * (matmul_params(n_kv) + NORM_PARAMS)
    assert 2 * one["flops"] - two["flops"] == 0


# ---------------------------------------------------------------- the textbook claim


def test_two_tb_s_gives_156():
    # R = 312e12 / 2.0e12 = 156 exactly; the exact weight count moves it by 0.014%
    # (norm weights read but not multiplied, and one embedding row per token).
    frame = api.balance(scenario(a100_at(2000), 0))
    b = frame["balance_batch_weights_only"].iloc[0]
    assert b == pytest.approx(float(weights_only_balance(2000 * G)), rel=1e-12)
    assert round(b) == 156 and abs(b - 156) < 0.05


def test_two_tb_s_file_through_the_cli(tmp_path, capsys):
    # The same part as a user accelerator file, read by `perfmodel balance --gpu FILE`.
    path = tmp_path / "a100-2tb.json"
    path.write_text(json.dumps({"name": "A100 at 2 TB/s", "memory_bytes": 80 * 2**30,
                                "memory_bandwidth_bytes_per_s": 2000 * G,
                                "peak_flops_per_s": {"bf16": PEAK, "fp32": int(VECTOR)}}))
    main(["balance", "--model", "llama-2-7b", "--gpu", str(path), "--format", "json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert row["balance_batch_weights_only"] == pytest.approx(float(weights_only_balance(2000 * G)), rel=1e-12)
    assert row["ridge_point_flop_per_byte"] == 156


@pytest.mark.parametrize("gpu, bandwidth, near", [("a100-80gb-sxm", 2039, 153.0), ("a100-40gb-sxm", 1555, 200.6)])
def test_catalog_a100s(gpu, bandwidth, near):
    # 312e12 / 2.039e12 = 153.02; 312e12 / 1.555e12 = 200.64
    frame = api.balance(scenario(get_accelerator(gpu), 0))
    b = frame["balance_batch_weights_only"].iloc[0]
    assert b == pytest.approx(float(weights_only_balance(bandwidth * G)), rel=1e-12)
    assert b == pytest.approx(near, abs=0.1)
    assert frame["ridge_point_flop_per_byte"].iloc[0] == pytest.approx(PEAK / (bandwidth * G), rel=1e-12)


def test_one_byte_weights_halve_the_balance():
    # b* = R·B_w/2: int8 weights (B_w = 1, the embedding and LM head too) with bf16 compute
    # balance at ≈ 78 on 2 TB/s.
    b = api.balance(scenario(a100_at(2000), 0, weight_dtype="int8", embed_dtype="int8"))["balance_batch_weights_only"].iloc[0]
    assert b == pytest.approx(float(weights_only_balance(2000 * G, Fraction(1))), rel=1e-12)
    assert b == pytest.approx(78, abs=0.05)


# ---------------------------------------------------------------- the full model


@pytest.mark.parametrize("t", [0, 100])
def test_full_balance_matches_the_hand_sum(t):
    # Activation traffic grows with the batch (raising b*), vector work adds compute
    # (lowering it), KV reads grow with batch and context: at t = 0 on the 80GB A100
    # the sum comes to ≈ 179, above the weights-only 153, and higher still at t = 100.
    frame = api.balance(scenario(get_accelerator("a100-80gb-sxm"), t))
    expected = hand_balance(2039 * G, t)
    assert frame["balance_batch"].iloc[0] == pytest.approx(float(expected), rel=1e-12)
    assert Fraction(frame["balance_batch_exact"].iloc[0]) == expected
    assert frame["balance_batch"].iloc[0] > frame["balance_batch_weights_only"].iloc[0]
    if t == 0:
        assert frame["balance_batch"].iloc[0] == pytest.approx(179.1, abs=0.05)


def test_mha_at_4k_has_no_balance(capsys):
    # At 4096 tokens each sequence reads 2·32·4096·4097·2 bytes of KV cache ≈ 2.15 GB per
    # step (1.05 ms at 2,039 GB/s) but computes only ≈ 15.4 GFLOP (49 µs at 312 TFLOP/s):
    # memory grows ≈ 21× faster than compute with the batch, so they never meet.
    main(["balance", "--model", "llama-2-7b", "--gpu", "a100-80gb-sxm", "--context", "4k", "--format", "json"])
    row = json.loads(capsys.readouterr().out)[0]
    _, c1, m1 = hand_terms(2039 * G, 4096)
    assert row["balance_batch"] is None and row["balance_batch_exact"] is None
    assert "memory-bound at every batch" in row["reason"] and f"{float(m1 / c1):.3g}x" in row["reason"]
    assert row["max_context_with_balance"] == hand_context_limit(2039 * G)
    assert row["memory_at_balance_bytes"] is None and row["fits_at_balance"] is None


def test_mqa_at_4k_has_a_balance(capsys):
    # One KV head (--set num_key_value_heads=1) reads 32× less cache per token: at 4096
    # tokens the compute per sequence still outgrows the memory, so a balance exists.
    main(["balance", "--model", "llama-2-7b", "--set", "num_key_value_heads=1", "--gpu", "a100-80gb-sxm",
          "--context", "4k", "--format", "json"])
    row = json.loads(capsys.readouterr().out)[0]
    expected = hand_balance(2039 * G, 4096, n_kv=1)
    assert expected is not None and hand_balance(2039 * G, 4096) is None
    assert row["balance_batch"] == pytest.approx(float(expected), rel=1e-12)
    assert row["max_context_with_balance"] == hand_context_limit(2039 * G, n_kv=1)


@pytest.mark.parametrize("n_kv", [32, 1])
def test_balance_exists_up_to_max_context_and_not_after(n_kv):
    # MHA: per context token, 524,288 KV bytes (0.26 µs) against 524,288 attention FLOPs
    # (1.7 ns), so the ≈ 36 µs lead compute has per sequence at t = 0 lasts ≈ 141 tokens.
    sc = scenario(get_accelerator("a100-80gb-sxm"), 0, n_kv)
    limit = api.balance(sc)["max_context_with_balance"].iloc[0]
    assert limit == hand_context_limit(2039 * G, n_kv)
    for t, exists in ((limit, True), (limit + 1, False)):
        at = sc.but(context=int(t))
        fixed = {k: v for k, v in at.values.items() if k != S.b}
        assert balance_batch(*step_terms(at.op_times()), fixed).exists is exists
    if n_kv == 32:
        assert limit == 141


# ---------------------------------------------------------------- the solver on toy expressions


def test_solver_cases_by_hand():
    b = S.b
    # 2b = 10 + b  ->  b = 10, solved exactly
    assert balance_batch(2 * b, 10 + b, {}).batch == 10
    # memory grows 1.5× faster than compute: never
    none = balance_batch(2 * b, 10 + 3 * b, {})
    assert not none.exists and "1.5x" in none.reason
    # compute ahead already at b -> 0
    assert "compute-bound at every batch" in balance_batch(5 + 2 * b, 1 + b, {}).reason
    # not linear (as MoE expert reads are): b = 10 + √b  ->  √b = (1 + √41)/2, b = 10.5 + √41/2
    nonlinear = balance_batch(b, 10 + sqrt(b), {})
    assert nonlinear.batch == pytest.approx(10.5 + math.sqrt(41) / 2, rel=1e-9)
    assert "bisection" in nonlinear.reason
