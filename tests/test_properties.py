"""Properties every operator table must have, on random small architectures and the
presets, in every phase and implementation (hypothesis).

Sources: what the quantities mean. Work and traffic are never negative and never shrink
when a step holds more sequences, more new tokens or (decode) more cached tokens; fewer
K/V heads never read more cache; keeping scores on chip never moves more bytes; the
exact causal count has the diagonal's full half that the area convention cuts; a window
only removes keys.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sympy import Integer

from perfmodel import metrics
from perfmodel import symbols as S
from perfmodel.architecture import FFN, Architecture, Attention, LatentAttention, Layer, MoE, Norm
from perfmodel.evaluate import bindings, partial
from perfmodel.ops.attention import visible_pairs
from perfmodel.ops.base import BYTE_FIELDS, EXPR_FIELDS
from perfmodel.options import Options
from perfmodel.presets import load_model
from perfmodel.table import build

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRESETS = ["llama-3-8b", "mixtral-8x7b", "gpt2-medium", "deepseek-v2-lite", "gemma-2-9b", "qwen1.5-moe-a2.7b", "falcon-7b"]


@st.composite
def attentions(draw):
    if draw(st.booleans()):
        heads = draw(st.sampled_from([1, 2, 4, 8]))
        return Attention(
            heads,
            draw(st.sampled_from([k for k in (1, 2, 4, 8) if heads % k == 0])),
            draw(st.sampled_from([4, 8, 16])),
            sliding_window=draw(st.none() | st.integers(1, 12)),
            qkv_bias=draw(st.booleans()),
            o_bias=draw(st.booleans()),
            fused_qkv=draw(st.booleans()),
            qk_norm=draw(st.booleans()),
            rope=draw(st.booleans()),
        )
    return LatentAttention(
        num_attention_heads=draw(st.sampled_from([1, 2, 4])),
        kv_lora_rank=draw(st.sampled_from([8, 16])),
        qk_nope_head_dim=draw(st.sampled_from([4, 8])),
        qk_rope_head_dim=draw(st.sampled_from([2, 4])),
        v_head_dim=draw(st.sampled_from([4, 8])),
        q_lora_rank=draw(st.none() | st.sampled_from([8, 24])),
        bias=draw(st.booleans()),
    )


@st.composite
def ffns(draw):
    activation = draw(st.sampled_from(["silu", "gelu", "relu"]))
    if draw(st.booleans()):
        return FFN(draw(st.sampled_from([16, 48])), gated=draw(st.booleans()), activation=activation, bias=draw(st.booleans()))
    experts = draw(st.integers(1, 8))
    shared = draw(st.integers(0, 2))
    return MoE(
        experts,
        draw(st.integers(1, experts)),
        draw(st.sampled_from([8, 24])),
        n_shared_experts=shared,
        shared_expert_intermediate_size=16 if shared else 0,
        shared_expert_gate=bool(shared) and draw(st.booleans()),
        activation=activation,
        gated=draw(st.booleans()),
    )


@st.composite
def architectures(draw):
    """A random small model: one or two layer kinds sharing their dimensions, or a preset."""
    if draw(st.integers(0, 3)) == 0:
        return load_model(draw(st.sampled_from(PRESETS)))
    attention, ffn = draw(attentions()), draw(ffns())
    norm = draw(st.sampled_from([Norm("rms"), Norm("layer", bias=True), Norm("nonparametric")]))
    parallel = draw(st.booleans())
    layer = Layer(attention, ffn, norm=norm, norms=("attn.norm",) if parallel else ("attn.norm", "ffn.norm"), parallel=parallel)
    layers = [layer] * draw(st.integers(1, 3))
    if draw(st.booleans()) and isinstance(attention, Attention):
        # a second kind: the same attention without (or with) a window, the other FFN kind
        other = Attention(attention.num_attention_heads, attention.num_key_value_heads, attention.head_dim,
                          sliding_window=None if attention.sliding_window else 5)
        layers.append(Layer(other, FFN(32)) if isinstance(ffn, MoE) else Layer(other, ffn))
    return Architecture(
        "random",
        draw(st.sampled_from([50, 100])),
        draw(st.sampled_from([16, 32])),
        tuple(layers),
        tie_word_embeddings=draw(st.booleans()),
        max_position_embeddings=draw(st.none() | st.just(4096)),
    )


@st.composite
def options(draw):
    phase = draw(st.sampled_from(["prefill", "decode", "train"]))
    return Options(
        phase=phase,
        attention_impl=draw(st.sampled_from(["fused", "naive"])),
        mask=draw(st.sampled_from(["causal", "none"])),
        causal_count=draw(st.sampled_from(["exact", "half"])),
        mla=draw(st.sampled_from(["auto", "absorbed", "naive"])),
        recompute=draw(st.sampled_from(["none", "selective", "full"])) if phase == "train" else "none",
        dropout=draw(st.booleans()),
        all_logits=draw(st.none() | st.booleans()),
    )


steps = st.fixed_dictionaries({"b": st.integers(1, 6), "s": st.integers(1, 40), "t": st.integers(0, 40)})


@lru_cache(maxsize=256)
def totals(arch: Architecture, opts: Options):
    """Each field summed over the table with the model's dimensions and bf16 bound,
    leaving b, s, t free."""
    fields = ("matmul_flops", "vector_flops") + BYTE_FIELDS
    sums = metrics.totals(build(arch, opts).ops, fields)
    fixed = bindings(arch)
    return {f: partial(e, fixed, free=(S.b, S.s, S.t)) for f, e in sums.items()}


def at(expr, b, s, t):
    return expr.xreplace({S.b: Integer(b), S.s: Integer(s), S.t: Integer(t)})


@SETTINGS
@given(architectures(), options(), steps)
def test_every_op_field_is_non_negative(arch, opts, step):
    values = {**bindings(arch), S.b: Integer(step["b"]), S.s: Integer(step["s"]), S.t: Integer(step["t"])}
    for op in build(arch, opts).ops:
        for field in EXPR_FIELDS:
            assert partial(getattr(op, field), values) >= 0, (op.name, field)


@SETTINGS
@given(architectures(), options(), steps, st.sampled_from(["b", "s", "t"]), st.integers(1, 9))
def test_flops_and_bytes_grow_with_the_step(arch, opts, step, grow, by):
    """More sequences, more new tokens, or a longer cache (at inference) never cost less."""
    if opts.training:
        step["t"] = 0
        if grow == "t":
            grow = "s"
    bigger = {**step, grow: step[grow] + by}
    for field, expr in totals(arch, opts).items():
        small, large = at(expr, **step), at(expr, **bigger)
        assert 0 <= small <= large, (field, grow)


@SETTINGS
@given(architectures(), options(), steps, st.integers(1, 9))
def test_training_activation_memory_grows(arch, opts, step, by):
    from perfmodel.memory import memory

    opts = replace(opts, phase="train")
    expr = partial(memory(build(arch, opts))["activation_bytes"], bindings(arch), free=(S.b, S.s, S.t))
    small = at(expr, step["b"], step["s"], 0)
    assert 0 <= small <= at(expr, step["b"] + by, step["s"], 0)
    assert small <= at(expr, step["b"], step["s"] + by, 0)


@SETTINGS
@given(st.sampled_from([2, 4, 8]), st.data(), options(), steps)
def test_fewer_kv_heads_never_read_more(heads, data, opts, step):
    """GQA/MQA (``n_kv`` < ``n_h``) against MHA: KV-cache reads, writes and size."""
    kv = data.draw(st.sampled_from([k for k in (1, 2, 4) if heads % k == 0 and k < heads]))
    window = data.draw(st.none() | st.integers(1, 12))

    def model(kv_heads):
        return Architecture("m", 100, 32, (Layer(Attention(heads, kv_heads, 8, sliding_window=window), FFN(32)),) * 2)

    if opts.training:
        step["t"] = 0
    gqa, mha = totals(model(kv), opts), totals(model(heads), opts)
    for field in ("kv_read_bytes", "kv_write_bytes", "act_read_bytes"):
        assert at(gqa[field], **step) <= at(mha[field], **step), field
    assert at(sum(gqa[f] for f in BYTE_FIELDS), **step) <= at(sum(mha[f] for f in BYTE_FIELDS), **step)
    gqa_cache, mha_cache = (partial(metrics.kv_cache_bytes(m), bindings(m), free=(S.b, S.t)) for m in (model(kv), model(heads)))
    assert at(gqa_cache, **step) <= at(mha_cache, **step)


@SETTINGS
@given(architectures(), options(), steps)
def test_fused_attention_never_moves_more_bytes(arch, opts, step):
    fused = totals(arch, replace(opts, attention_impl="fused"))
    naive = totals(arch, replace(opts, attention_impl="naive"))
    if opts.training:
        step["t"] = 0
    for field in BYTE_FIELDS:
        assert at(fused[field], **step) <= at(naive[field], **step), field


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(0, 200), st.none() | st.integers(1, 300))
def test_pair_counts_are_ordered(s, t, window):
    """exact ≥ half (the area convention); windowed ≤ full; causal ≤ the unmasked rectangle."""
    values = {S.s: Integer(s), S.t: Integer(t), S.W: Integer(window or 1)}
    windowed = Attention(4, 2, 8, sliding_window=window)
    unwindowed = Attention(4, 2, 8)

    def pairs(att, **kw):
        return visible_pairs(att, Options(**kw)).xreplace(values)

    for att in (windowed, unwindowed):
        exact, half = pairs(att, causal_count="exact"), pairs(att, causal_count="half")
        assert 0 < half <= exact <= pairs(att, mask="none")
    for kw in ({"causal_count": "exact"}, {"causal_count": "half"}, {"mask": "none"}):
        assert pairs(windowed, **kw) <= pairs(unwindowed, **kw)
