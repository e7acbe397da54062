"""Hand derivations: every operator of small models, FLOPs and bytes worked out in this
file from the tensor shapes, for prefill, decode and a training step.

The toy is a 2-layer Llama-style decoder: d = 64, 4 query heads and 2 KV heads of 16,
a gated SiLU FFN of 128, vocabulary 100, RMSNorm, RoPE, untied head; all dtypes bf16
(2 bytes). Conventions used below, as ops/base.py states them: a matmul of an
``m×k`` by a ``k×n`` matrix is ``2mkn`` FLOPs; elementwise FLOPs per element are RMSNorm 4,
RoPE 3, softmax 5, SiLU 4, add or multiply 1, Adam 12 (FlopCounterMode counts none of
these); a fused attention kernel keeps scores on chip, a naive one writes them out.
Also here: a toy MoE layer, a toy MLA layer in both forms (checked against torch
implementations written here), and the visible (query, key) pairs of causal and
sliding-window attention enumerated in Python loops.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from sympy import Rational

from perfmodel import symbols as S
from perfmodel.architecture import FFN, Architecture, Attention, LatentAttention, Layer, MoE
from perfmodel.evaluate import bindings, value
from perfmodel.ops.attention import visible_pairs
from perfmodel.ops.base import EXPR_FIELDS
from perfmodel.options import Options
from perfmodel.table import build

D, H, KV, DH, FF, V, L = 64, 4, 2, 16, 128, 100, 2
BYTES = 2  # bf16 weights, activations and cache

FIELDS = [f for f in EXPR_FIELDS if f != "repeat"]


def toy() -> Architecture:
    return Architecture("toy", V, D, (Layer(Attention(H, KV, DH), FFN(FF)),) * L)


def ops_of(arch, options: Options, pass_: str, b: int, s: int, t: int) -> dict[str, dict[str, int]]:
    """Per-layer numbers of every op of one pass (names are unique within a pass here)."""
    values = bindings(arch, b=b, s=s, t=t)
    out = {}
    for op in build(arch, options).ops:
        if op.pass_ == pass_:
            assert op.name not in out
            out[op.name] = {f: value(getattr(op, f), values) for f in FIELDS}
            out[op.name]["repeat"] = value(op.repeat, values)
    return out


def full(**fields) -> dict[str, int]:
    """Every field, zero unless given."""
    return {f: fields.get(f, 0) for f in FIELDS}


def toy_expected(phase: str, b: int, s: int, t: int) -> dict[str, dict[str, int]]:
    """The toy's ops for one step, derived by hand. ``n = b·s`` new tokens; each sequence's
    kernel reads ``t + s`` keys; query ``i`` of ``s`` sees ``t + i + 1`` of them (causal)."""
    train = phase == "train"
    n = b * s
    keys = b * (t + s)  # key (and value) vectors per KV head the kernel reads
    pairs = b * H * (s * t + s * (s + 1) // 2)  # Σ_i (t + i + 1), i = 0..s-1, per head
    rows = b if phase == "prefill" else n  # a generation prefill needs the last logits only
    x = n * D * BYTES  # one hidden state of the step, in bytes
    q, kv = n * H * DH * BYTES, n * KV * DH * BYTES  # Q; one of K or V (new tokens)
    hid = n * FF * BYTES  # one FFN intermediate

    def rms(saved):
        return full(vector_flops=4 * n * D, weight_bytes=D * BYTES, act_read_bytes=x, act_write_bytes=x, saved_bytes=saved)

    def proj(k_in, k_out, saved):
        return full(
            matmul_flops=2 * n * k_in * k_out,
            weight_bytes=k_in * k_out * BYTES,
            act_read_bytes=n * k_in * BYTES,
            act_write_bytes=n * k_out * BYTES,
            saved_bytes=saved,
        )

    residual = full(vector_flops=n * D, act_read_bytes=2 * x, act_write_bytes=x)
    # at inference K and V come from the cache (bf16); in training they are activations
    k_read = keys * KV * DH * BYTES
    cache, act = (0, k_read) if train else (k_read, 0)
    ops = {
        "embed.tokens": full(weight_bytes=x, act_write_bytes=x),  # a gather: one row per token
        "attn.norm": rms(x),
        "attn.q_proj": proj(D, H * DH, x),  # keeps x for its backward; k and v share it
        "attn.k_proj": proj(D, KV * DH, 0),
        "attn.v_proj": proj(D, KV * DH, 0),
        "attn.rope": full(vector_flops=3 * n * (H + KV) * DH, act_read_bytes=q + kv, act_write_bytes=q + kv),
        "attn.qk": full(
            matmul_flops=2 * pairs * DH, act_read_bytes=q + act, kv_read_bytes=cache, saved_bytes=q + act
        ),
        # FlashAttention's backward keeps one fp32 log-sum-exp per query row and head
        # one exponential per visible score
        "attn.softmax": full(vector_flops=5 * pairs, exps=pairs, saved_bytes=b * H * s * 4),
        "attn.pv": full(
            matmul_flops=2 * pairs * DH, act_read_bytes=act, kv_read_bytes=cache, act_write_bytes=q, saved_bytes=act + q
        ),
        "attn.o_proj": proj(H * DH, D, q),
        "attn.residual": residual,
        "ffn.norm": rms(x),
        "ffn.gate_proj": proj(D, FF, x),
        "ffn.up_proj": proj(D, FF, 0),
        # silu(gate) · up: 4 + 1 FLOPs per element; both inputs kept for the backward
        "ffn.act": full(vector_flops=5 * n * FF, act_read_bytes=2 * hid, act_write_bytes=hid, saved_bytes=2 * hid),
        "ffn.down_proj": proj(FF, D, hid),
        "ffn.residual": residual,
        "final_norm": rms(x),
        "lm_head": full(
            matmul_flops=2 * rows * D * V,
            weight_bytes=V * D * BYTES,
            act_read_bytes=rows * D * BYTES,
            act_write_bytes=rows * V * BYTES,
            saved_bytes=rows * D * BYTES,
        ),
    }
    if train:
        # softmax over the logits (5/element), one fp32 loss per row, fp32 probabilities kept
        ops["loss"] = full(
            vector_flops=5 * rows * V, act_read_bytes=rows * V * BYTES, act_write_bytes=rows * 4, saved_bytes=rows * V * 4
        )
    else:
        # the new tokens' K and V go into the cache
        ops["attn.kv_cache_write"] = full(act_read_bytes=2 * kv, kv_write_bytes=2 * kv)
    model_level = {"embed.tokens", "final_norm", "lm_head", "loss"}
    for name, fields in ops.items():
        fields["repeat"] = 1 if name in model_level else L
    return ops


def check(got: dict, want: dict, *, inference: bool) -> None:
    assert set(got) == set(want)
    for name in want:
        if inference:  # what an op keeps for a backward pass only matters in training
            got[name]["saved_bytes"] = want[name]["saved_bytes"] = 0
        assert got[name] == want[name], name


@pytest.mark.parametrize(
    ("phase", "b", "s", "t"), [("prefill", 2, 8, 0), ("prefill", 3, 5, 0), ("decode", 2, 1, 8), ("decode", 3, 4, 6)]
)
def test_toy_inference_ops(phase, b, s, t):
    got = ops_of(toy(), Options(phase=phase), "fwd", b, s, t)
    check(got, toy_expected(phase, b, s, t), inference=True)


def test_toy_training_step():
    """Forward ops with what each keeps; each backward op doubles its forward's work (dX and
    dW), except FlashAttention's QKᵀ, which recomputes the scores (3×); then one Adam step
    over the 86,848 parameters: reads bf16 grads (2) and fp32 master, m, v (12), writes the
    states (12) and the bf16 weights (2)."""
    b, s = 2, 8
    arch = toy()
    want = toy_expected("train", b, s, 0)
    check(ops_of(arch, Options(phase="train"), "fwd", b, s, 0), want, inference=False)
    backward = ops_of(arch, Options(phase="train"), "bwd", b, s, 0)
    assert set(backward) == set(want)
    for name, fwd in want.items():
        factor = 3 if name == "attn.qk" else 2
        expected = {f: 2 * v for f, v in fwd.items()}
        # FlashAttention's backward recomputes P = exp(S - LSE): each exponential once more
        expected.update(matmul_flops=factor * fwd["matmul_flops"], saved_bytes=0, repeat=fwd["repeat"], exps=fwd["exps"])
        assert backward[name] == expected, name
    params = V * D + L * (D * H * DH + 2 * D * KV * DH + H * DH * D + 3 * D * FF + 2 * D) + D + V * D
    assert params == 86848
    (step,) = ops_of(arch, Options(phase="train"), "optimizer", b, s, 0).values()
    adam = full(vector_flops=12 * params, weight_bytes=2 * params, act_read_bytes=14 * params, act_write_bytes=12 * params)
    assert step == adam | {"repeat": 1}


def test_toy_fused_against_naive_attention_bytes():
    """A naive kernel writes the ``b·h·s·keys`` score matrix from QKᵀ, the softmax reads it
    and writes the probabilities, PV reads those: 4 passes over it; FLOPs are unchanged."""
    b, s, t = 2, 8, 3
    fused = ops_of(toy(), Options(phase="decode"), "fwd", b, s, t)
    naive = ops_of(toy(), Options(phase="decode", attention_impl="naive"), "fwd", b, s, t)
    scores = b * H * s * (t + s) * BYTES
    assert naive["attn.qk"]["act_write_bytes"] - fused["attn.qk"]["act_write_bytes"] == scores
    assert naive["attn.softmax"]["act_read_bytes"] == naive["attn.softmax"]["act_write_bytes"] == scores
    assert fused["attn.softmax"]["act_read_bytes"] == fused["attn.softmax"]["act_write_bytes"] == 0
    assert naive["attn.pv"]["act_read_bytes"] - fused["attn.pv"]["act_read_bytes"] == scores
    for name in fused:
        assert naive[name]["matmul_flops"] == fused[name]["matmul_flops"]
        if name not in ("attn.qk", "attn.softmax", "attn.pv"):
            assert naive[name] == fused[name]


def test_toy_against_transformers():
    """The same toy as a real ``LlamaForCausalLM`` with real weights: its parameter count is
    the hand count above, and FlopCounterMode's matmul FLOPs for a prefill (all logits),
    a decode step after it and a training step equal the hand-derived ops' (full square)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=L, num_attention_heads=H,
        num_key_value_heads=KV, head_dim=DH, tie_word_embeddings=False,
    )
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    assert sum(p.numel() for p in model.parameters()) == 86848
    b, s = 2, 8

    def count(fn):
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    def hand(phase, b, s, t, square=True):
        # the full square: every query against all t + s keys
        ops = toy_expected(phase, b, s, t)
        if square:
            for name in ("attn.qk", "attn.pv"):
                ops[name]["matmul_flops"] = 2 * b * H * s * (t + s) * DH
        return sum(op["matmul_flops"] * op["repeat"] for op in ops.values())

    tokens = torch.randint(0, V, (b, s))
    with torch.no_grad():
        prefill = count(lambda: model(input_ids=tokens))
        cache = model(input_ids=tokens).past_key_values
        decode = count(lambda: model(input_ids=tokens[:, :1], past_key_values=cache))
    assert prefill == hand("decode", b, s, 0)  # every token's logits, as decode rows are
    assert decode == hand("decode", b, 1, s)
    model.train()
    train = count(lambda: model(input_ids=tokens, labels=tokens).loss.backward())
    assert train == 3 * hand("train", b, s, 0)


# --- a toy MoE layer ---------------------------------------------------------------------
E, K, DE = 8, 2, 32


def touched_by_enumeration(tokens: int) -> Fraction:
    """Expected distinct experts when each token picks one of the C(E, k) expert sets
    uniformly: the average over every routing of ``tokens`` tokens."""
    choices = list(itertools.combinations(range(E), K))
    total = sum(len(set().union(*routing)) for routing in itertools.product(choices, repeat=tokens))
    return Fraction(total, len(choices) ** tokens)


@pytest.mark.parametrize("tokens", [1, 2, 3])
def test_toy_moe_layer(tokens):
    """Router ``d → E``, top-k, the k chosen experts of width 32 per token (gate+up fused,
    as transformers stores them), their weighted sum; expert weights read = the expected
    number of distinct experts touched, ``E·(1 − (1 − k/E)^(b·s))``, here checked against an
    enumeration of every routing."""
    arch = Architecture("moe", V, D, (Layer(Attention(H, KV, DH), MoE(E, K, DE)),))
    touched = touched_by_enumeration(tokens)
    assert touched == E * (1 - (1 - Fraction(K, E)) ** tokens)
    got = ops_of(arch, Options(phase="decode"), "fwd", tokens, 1, 5)
    routed = tokens * K  # (token, expert) pairs
    expected = {
        "moe.router": full(
            matmul_flops=2 * tokens * D * E, weight_bytes=D * E * BYTES, act_read_bytes=tokens * D * BYTES,
            act_write_bytes=tokens * E * BYTES,
        ),
        "moe.topk": full(vector_flops=5 * tokens * E, act_read_bytes=tokens * E * BYTES, act_write_bytes=tokens * E * BYTES),
        "moe.experts.gate_up_proj": full(
            matmul_flops=2 * routed * D * 2 * DE, weight_bytes=touched * 2 * DE * D * BYTES,
            act_read_bytes=routed * D * BYTES, act_write_bytes=routed * 2 * DE * BYTES,
        ),
        "moe.experts.act": full(
            vector_flops=5 * routed * DE, act_read_bytes=2 * routed * DE * BYTES, act_write_bytes=routed * DE * BYTES
        ),
        "moe.experts.down_proj": full(
            matmul_flops=2 * routed * DE * D, weight_bytes=touched * D * DE * BYTES,
            act_read_bytes=routed * DE * BYTES, act_write_bytes=routed * D * BYTES,
        ),
        # scale each expert output by its routing weight and add them up: 2 FLOPs per element
        "moe.combine": full(vector_flops=2 * routed * D, act_read_bytes=routed * D * BYTES, act_write_bytes=tokens * D * BYTES),
    }
    for name, want in expected.items():
        got[name]["saved_bytes"] = 0
        del got[name]["repeat"]
        assert got[name] == want, name


def test_toy_shared_expert():
    """Qwen-MoE style: one always-on shared expert (gated, width 48) behind a sigmoid gate
    ``d → 1`` whose output scales the shared expert's, for every token."""
    moe = MoE(E, K, DE, n_shared_experts=1, shared_expert_intermediate_size=48, shared_expert_gate=True)
    arch = Architecture("moe", V, D, (Layer(Attention(H, KV, DH), moe),))
    n = 3 * 4
    got = ops_of(arch, Options(phase="prefill"), "fwd", 3, 4, 0)
    assert got["moe.shared.gate_proj"]["matmul_flops"] == got["moe.shared.up_proj"]["matmul_flops"] == 2 * n * D * 48
    assert got["moe.shared.down_proj"]["matmul_flops"] == 2 * n * 48 * D
    assert got["moe.shared_gate"]["matmul_flops"] == 2 * n * D
    assert got["moe.shared.gate_proj"]["weight_bytes"] == D * 48 * BYTES
    assert got["moe.shared_gate.mul"]["vector_flops"] == n * D


# --- a toy MLA layer ---------------------------------------------------------------------
NH, RKV, NOPE, ROPE, DV = 4, 16, 8, 4, 8


def mla_toy() -> Architecture:
    att = LatentAttention(
        num_attention_heads=NH, kv_lora_rank=RKV, qk_nope_head_dim=NOPE, qk_rope_head_dim=ROPE, v_head_dim=DV
    )
    return Architecture("mla", V, D, (Layer(att, FFN(FF)),))


#: the matmuls of an MLA layer's attention, in either form
MLA_OPS = (
    "attn.q_proj", "attn.kv_a_proj", "attn.kv_b_proj", "attn.q_absorb", "attn.qk", "attn.pv", "attn.v_absorb", "attn.o_proj"
)


@pytest.mark.parametrize("form", ["naive", "absorbed"])
def test_toy_mla_decode(form):
    """One decode step (b = 2, t = 5 cached). Both forms project ``q`` (``d → n_h·(nope+rope)``)
    and the latent plus shared RoPE key (``d → r_kv + rope``). Naive (DeepSeek's reference
    ``attn_impl="naive"``): expand the new latent with ``kv_b_proj`` (``r_kv → n_h·(nope+v)``),
    cache K (``n_h·(nope+rope)``) and V (``n_h·v``), attend like MHA. Absorbed: cache the latent
    and RoPE key (``r_kv + rope``), fold ``kv_b``'s key half into q (``q_absorb``), attend over
    ``r_kv + rope`` dims with the latent as values, then apply its value half (``v_absorb``)."""
    b, t = 2, 5
    n, keys = b, t + 1
    pairs = b * NH * keys
    got = ops_of(mla_toy(), Options(phase="decode", mla=form), "fwd", b, 1, t)
    assert got["attn.q_proj"]["matmul_flops"] == 2 * n * D * NH * (NOPE + ROPE)
    assert got["attn.kv_a_proj"]["matmul_flops"] == 2 * n * D * (RKV + ROPE)
    assert got["attn.rope"]["vector_flops"] == 3 * n * (NH + 1) * ROPE
    if form == "naive":
        assert "attn.q_absorb" not in got and "attn.v_absorb" not in got
        assert got["attn.kv_b_proj"]["matmul_flops"] == 2 * n * RKV * NH * (NOPE + DV)
        assert got["attn.kv_cache_write"]["kv_write_bytes"] == n * NH * (NOPE + ROPE + DV) * BYTES
        assert got["attn.qk"]["matmul_flops"] == 2 * pairs * (NOPE + ROPE)
        assert got["attn.qk"]["kv_read_bytes"] == b * keys * NH * (NOPE + ROPE) * BYTES
        assert got["attn.pv"]["matmul_flops"] == 2 * pairs * DV
        assert got["attn.pv"]["kv_read_bytes"] == b * keys * NH * DV * BYTES
    else:
        assert "attn.kv_b_proj" not in got
        assert got["attn.kv_cache_write"]["kv_write_bytes"] == n * (RKV + ROPE) * BYTES
        assert got["attn.q_absorb"]["matmul_flops"] == 2 * n * NH * NOPE * RKV
        assert got["attn.q_absorb"]["weight_bytes"] == NH * NOPE * RKV * BYTES
        assert got["attn.qk"]["matmul_flops"] == 2 * pairs * (RKV + ROPE)
        assert got["attn.qk"]["kv_read_bytes"] == b * keys * (RKV + ROPE) * BYTES  # shared by the heads
        assert got["attn.pv"]["matmul_flops"] == 2 * pairs * RKV
        assert got["attn.pv"]["kv_read_bytes"] == 0  # the latent read for QKᵀ is the values
        assert got["attn.v_absorb"]["matmul_flops"] == 2 * n * NH * RKV * DV
        assert got["attn.v_absorb"]["weight_bytes"] == NH * DV * RKV * BYTES
    assert got["attn.o_proj"]["matmul_flops"] == 2 * n * NH * DV * D


def test_toy_mla_forms_agree_in_torch():
    """Both forms written in torch (float64, random weights, no RoPE rotation: it does not
    change any shape): they give the same output, and FlopCounterMode's count of each equals
    the sum of our ops of that form."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    b, t = 2, 5
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    wq, wkva, wkvb, wo = rand(D, NH * (NOPE + ROPE)), rand(D, RKV + ROPE), rand(RKV, NH * (NOPE + DV)), rand(NH * DV, D)
    w_uk = wkvb.view(RKV, NH, NOPE + DV)[..., :NOPE]
    w_uv = wkvb.view(RKV, NH, NOPE + DV)[..., NOPE:]
    x = rand(b, 1, D)
    old_latent, old_rope = rand(b, t, RKV), rand(b, t, ROPE)  # what the earlier tokens left

    def project():
        q = (x @ wq).view(b, 1, NH, NOPE + ROPE)
        latent = x @ wkva
        c = torch.cat([old_latent, latent[..., :RKV]], dim=1)  # (b, t+1, r_kv)
        kr = torch.cat([old_rope, latent[..., RKV:]], dim=1)  # (b, t+1, rope)
        return q[..., :NOPE], q[..., NOPE:], c, kr

    # the naive cache holds the expanded K and V of the earlier tokens
    cached_k = torch.einsum("btr,rhn->bthn", old_latent, w_uk)
    cached_v = torch.einsum("btr,rhv->bthv", old_latent, w_uv)

    def naive():
        q_nope, q_rope, c, kr = project()
        new = (c[:, -1:] @ wkvb).view(b, 1, NH, NOPE + DV)  # expand only the new latent
        k_nope = torch.cat([cached_k, new[..., :NOPE]], dim=1)
        v = torch.cat([cached_v, new[..., NOPE:]], dim=1)
        k = torch.cat([k_nope, kr[:, :, None, :].expand(b, t + 1, NH, ROPE)], dim=-1)
        q = torch.cat([q_nope, q_rope], dim=-1)
        p = torch.softmax(torch.einsum("bshd,bthd->bhst", q, k), dim=-1)
        return torch.einsum("bhst,bthv->bshv", p, v).reshape(b, 1, NH * DV) @ wo

    def absorbed():
        q_nope, q_rope, c, kr = project()
        q_latent = torch.einsum("bshn,rhn->bshr", q_nope, w_uk)
        scores = torch.einsum("bshr,btr->bhst", q_latent, c) + torch.einsum("bshp,btp->bhst", q_rope, kr)
        o_latent = torch.einsum("bhst,btr->bshr", torch.softmax(scores, dim=-1), c)
        return torch.einsum("bshr,rhv->bshv", o_latent, w_uv).reshape(b, 1, NH * DV) @ wo

    assert torch.allclose(naive(), absorbed(), rtol=1e-10, atol=1e-9)
    for form, fn in (("naive", naive), ("absorbed", absorbed)):
        with FlopCounterMode(display=False) as counter:
            fn()
        got = ops_of(mla_toy(), Options(phase="decode", mla=form), "fwd", b, 1, t)
        assert counter.get_total_flops() == sum(got[name]["matmul_flops"] for name in MLA_OPS if name in got), form


# --- visible (query, key) pairs ----------------------------------------------------------


def pairs_by_enumeration(s: int, t: int, window: int | None, convention: str) -> Fraction:
    """Queries at positions t..t+s-1, keys at 0..t+s-1; query q sees key k when
    ``0 ≤ q − k < W`` (causal; W = ∞ without a window). ``exact`` counts those pairs.
    ``half`` is the area convention of the FlashAttention papers (a causal square is s²/2):
    the area of unit cell [q, q+1) × [k, k+1) inside the band ``0 ≤ x − y ≤ W``, by the
    midpoint rule in x (exact: the band's edges cross cells only along diagonals)."""
    total = Fraction(0)
    w = window if window is not None else 10**9
    for qpos in range(t, t + s):
        for kpos in range(t + s):
            if convention == "exact":
                total += 0 <= qpos - kpos < w
            else:
                x = Fraction(2 * qpos + 1, 2)
                low, high = max(Fraction(kpos), x - w), min(Fraction(kpos + 1), x)
                total += max(Fraction(0), high - low)
    return total


@pytest.mark.parametrize("convention", ["exact", "half"])
@pytest.mark.parametrize("window", [None, 1, 3, 8])
def test_visible_pairs_by_enumeration(convention, window):
    att = Attention(H, KV, DH, sliding_window=window)
    expr = visible_pairs(att, Options(mask="causal", causal_count=convention))
    values = {S.W: window} if window else {}
    for s in range(1, 11):
        for t in (0, 1, 2, 5, 9, 17):
            got = Rational(expr.subs({**values, S.s: s, S.t: t}))
            assert got == Rational(str(pairs_by_enumeration(s, t, window, convention))), (s, t)


@pytest.mark.parametrize("window", [None, 3, 8])
def test_unmasked_pairs(window):
    """``mask=none``: every query against every key the kernel is given: the cached ones
    (transformers keeps the last W − 1 in a window) and the s new ones."""
    att = Attention(H, KV, DH, sliding_window=window)
    expr = visible_pairs(att, Options(mask="none"))
    for s, t in itertools.product(range(1, 7), (0, 1, 2, 7, 12)):
        cached = t if window is None else min(t, window - 1)
        assert expr.subs({S.W: window or 1, S.s: s, S.t: t}) == s * (cached + s)
