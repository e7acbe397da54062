"""Attention blocks: MHA/GQA/MQA and DeepSeek's MLA, for any phase.

A step processes ``s`` new tokens per sequence against ``t`` cached ones. The KV
cache size, the keys each query sees (causal, sliding window, or the full square)
and every attention FLOP and byte are defined here once.
"""

from __future__ import annotations

from dataclasses import replace

from sympy import Expr, Integer, Min

from perfmodel import symbols as S
from perfmodel.architecture import Attention, LatentAttention, Layer
from perfmodel.ops.base import (
    ELEMENTWISE_FLOPS,
    LSE_BYTES,
    ZERO,
    Block,
    Op,
    Site,
    elementwise,
    linear,
    norm,
    tokens,
)
from perfmodel.options import Options


def kv_elements_per_token(att: Attention | LatentAttention, options: Options) -> Expr:
    """Cache elements one token adds to one layer.

    MHA/GQA/MQA: K and V, ``2·n_kv·d_h``. MLA caching the latent (``absorbed`` and
    ``expand`` forms; what a deployment caches, DeepSeek-V2 §2.1, and what transformers
    caches): ``d_c + d_h^R`` = ``r_kv + d_rope``. MLA ``naive``: expanded K
    (``n_h·(d_nope+d_rope)``) and V (``n_h·d_v``), DeepSeek's reference naive form.
    """
    if isinstance(att, Attention):
        return 2 * S.n_kv * S.d_h
    if options.mla_form == "naive":
        return S.n_h * (S.d_nope + S.d_rope + S.d_v)
    return S.r_kv + S.d_rope


def cached_tokens(att: Attention | LatentAttention, context: Expr) -> Expr:
    """Tokens one layer keeps of ``context``: all, or the last ``W − 1`` in a sliding
    window (the next query sees ``W`` keys, itself included; ``transformers`` keeps
    ``W − 1``)."""
    if att.sliding_window:
        return Min(context, S.W - 1)
    return context


def keys_read(att: Attention | LatentAttention) -> Expr:
    """Keys the kernel is given per sequence: the cached ones plus the ``s`` new ones."""
    return cached_tokens(att, S.t) + S.s


def visible_pairs(att: Attention | LatentAttention, options: Options) -> Expr:
    """(query, key) pairs per sequence and head whose scores are computed.

    ``mask=none``: the full rectangle ``s × keys_read``. Causal: query ``i`` (at position
    ``t+i``) sees ``min(t+i+1, W)`` keys; summed, ``F(t+s) − F(t)`` with
    ``F(n) = m(m+c)/2 + (n−m)·W``, ``m = min(n, W)``; ``c = 1`` counts pairs exactly,
    ``c = 0`` is the FlashAttention papers' area convention (``s²/2`` for a square).
    """
    if options.mask == "none" or not att.causal:  # bidirectional: every query sees every key
        return S.s * keys_read(att)
    c = Integer(1) if options.causal_count == "exact" else Integer(0)
    if not att.sliding_window:
        return S.s * S.t + S.s * (S.s + c) / 2

    def area(n: Expr) -> Expr:
        m = Min(n, S.W)
        return m * (m + c) / 2 + (n - m) * S.W

    return area(S.t + S.s) - area(S.t)


def attention_core(
    site: Site,
    att: Attention | LatentAttention,
    options: Options,
    *,
    heads: Expr,
    qk_dim: Expr,
    v_dim: Expr,
    k_per_key: Expr,
    v_per_key: Expr,
    from_cache: bool | None = None,
    source_keys: Expr | None = None,
) -> tuple:
    """QKᵀ, softmax and PV over the visible pairs; fused kernels keep scores on chip.

    ``k_per_key``/``v_per_key``: elements read per key (all K/V heads). At inference
    they come from the cache (``B_kv``), unless the attention is bidirectional (an
    encoder's); in training, or when freshly expanded from an MLA latent
    (``from_cache=False``), they are activations (``B_a``). ``source_keys``: keys per
    sequence when they are not this stack's own (cross-attention: the source), all visible.
    """
    from_cache = options.caching and att.causal if from_cache is None else from_cache
    seen = keys_read(att) if source_keys is None else source_keys
    visible = visible_pairs(att, options) if source_keys is None else S.s * source_keys
    pairs = S.b * heads * visible
    # attention sinks: one learned logit per head joins each query row's softmax
    sinks = isinstance(att, Attention) and att.sinks
    sink_logits = S.b * heads * S.s if sinks else ZERO
    score_elements = S.b * heads * S.s * seen  # what a naive kernel materialises
    naive = options.attention_impl == "naive"
    keys = S.b * seen
    q_bytes = tokens() * heads * qk_dim * S.B_a
    o_bytes = tokens() * heads * v_dim * S.B_a
    if from_cache:
        k_cache, v_cache = keys * k_per_key * S.B_kv, keys * v_per_key * S.B_kv
        k_act = v_act = ZERO
    else:
        k_cache = v_cache = ZERO
        k_act, v_act = keys * k_per_key * S.B_a, keys * v_per_key * S.B_a
    scores = score_elements * S.B_a if naive else ZERO
    dropout = options.dropout and options.training
    if options.recompute == "selective":
        softmax_saved = ZERO  # recomputed from the kept Q and K in the backward pass
    elif naive:
        # probabilities kept for PV's backward; with dropout also the 1-byte mask and its output
        softmax_saved = score_elements * S.B_a * (2 if dropout else 1) + (score_elements if dropout else ZERO)
    else:
        softmax_saved = S.b * heads * S.s * LSE_BYTES
    # as batched GEMMs: b·heads·s query rows against the keys each query sees
    query_rows = S.b * heads * S.s
    keys_per_query = visible / S.s
    qk = site.op(
        "attn.qk",
        gemm=(query_rows, keys_per_query, qk_dim),
        matmul_flops=2 * pairs * qk_dim,
        act_read_bytes=q_bytes + k_act,
        kv_read_bytes=k_cache,
        act_write_bytes=scores,
        saved_bytes=q_bytes + k_act,
        core_attention=True,
        backward_factor=2 if naive else 3,
    )
    softmax = site.op(
        "attn.softmax",
        vector_flops=(pairs + sink_logits) * ELEMENTWISE_FLOPS["softmax"],
        exps=pairs + sink_logits,
        weight_bytes=heads * S.B_w if sinks else ZERO,
        act_read_bytes=scores,
        act_write_bytes=scores,
        saved_bytes=softmax_saved,
        core_attention=True,
    )
    pv = site.op(
        "attn.pv",
        gemm=(query_rows, v_dim, keys_per_query),
        matmul_flops=2 * pairs * v_dim,
        act_read_bytes=scores + v_act,
        kv_read_bytes=v_cache,
        act_write_bytes=o_bytes,
        saved_bytes=v_act + (ZERO if naive else o_bytes),
        core_attention=True,
    )
    return qk, softmax, pv


def _cache_write(site: Site, att, options: Options) -> tuple:
    """Inference stores the new tokens' K/V (or MLA latent) in the cache dtype; an
    encoder's bidirectional attention keeps none."""
    if not options.caching or not att.causal:
        return ()
    elements = tokens() * kv_elements_per_token(att, options)
    return (
        site.op(
            "attn.kv_cache_write",
            act_read_bytes=elements * S.B_a,
            kv_write_bytes=elements * S.B_kv,
        ),
    )


def _rope(site: Site, vectors: Expr, dim: Expr) -> tuple:
    """Rotary embedding applied to ``vectors`` head vectors of ``dim`` per token."""
    elements = tokens() * vectors * dim
    return (elementwise(site, "attn.rope", elements, ELEMENTWISE_FLOPS["rope"]),)


def attention_block(site: Site, layer: Layer, options: Options) -> Block:
    """The attention half of a layer (without its norms and residual)."""
    att = layer.attention
    if isinstance(att, LatentAttention):
        return _latent(site, att, options)
    return _standard(site, att, options)


def key_bias(att: Attention) -> bool:
    """Whether k_proj has a bias: ``qkv_bias`` unless the family says otherwise (Whisper)."""
    return att.qkv_bias if att.k_bias is None else att.k_bias


def _standard(site: Site, att: Attention, options: Options) -> Block:
    q_width, kv_width = S.n_h * S.d_h, S.n_kv * S.d_h
    if att.fused_qkv:
        block = linear(site, "attn.qkv_proj", S.d, q_width + 2 * kv_width, "attention", bias=att.qkv_bias)
    else:
        block = (
            linear(site, "attn.q_proj", S.d, q_width, "attention", bias=att.qkv_bias)
            + linear(site, "attn.k_proj", S.d, kv_width, "attention", bias=key_bias(att), save_input=False)
            + linear(site, "attn.v_proj", S.d, kv_width, "attention", bias=att.qkv_bias, save_input=False)
        )
    if att.qk_norm:
        kind, bias = att.qk_norm_kind.kind, att.qk_norm_kind.bias
        for name, heads in (("attn.q_norm", S.n_h), ("attn.k_norm", S.n_kv)):
            if att.qk_norm_weight == "head":
                block += norm(site, name, S.d_h, kind, bias, rows=tokens() * heads)
            else:
                block += norm(site, name, heads * S.d_h, kind, bias)
    core = attention_core(
        site,
        att,
        options,
        heads=S.n_h,
        qk_dim=S.d_h,
        v_dim=S.d_h,
        k_per_key=S.n_kv * S.d_h,
        v_per_key=S.n_kv * S.d_h,
    )
    if att.position_bias:
        core = (position_bias_add(site, options, att),) + core
    rotated = S.d_h if att.rotary_dim is None else Integer(att.rotary_dim)
    rope = _rope(site, S.n_h + S.n_kv, rotated) if att.rope else ()
    sinks = (site.tensor("attn.sinks", (S.n_h,), "attention"),) if att.sinks else ()
    block += Block(sinks, rope + _cache_write(site, att, options) + core)
    return block + linear(site, "attn.o_proj", q_width, S.d, "attention", bias=att.o_bias)


def position_bias_add(site: Site, options: Options, att: Attention) -> Op:
    """T5's learned relative-position bias added to every score of every sequence: one
    add per visible pair, reading the ``n_h × s × keys`` bias (shared by the batch)."""
    return site.op(
        "attn.position_bias",
        vector_flops=S.b * S.n_h * visible_pairs(att, options) * ELEMENTWISE_FLOPS["add"],
        act_read_bytes=S.n_h * S.s * keys_read(att) * S.B_a,
        core_attention=True,
    )


def _per_head(site: Site, name: str, n_in: Expr, n_out: Expr) -> Op:
    """A projection applied per head (``n_h`` of them) with part of ``kv_b_proj``'s weight:
    the absorbed MLA's query (``d_nope -> r_kv``) and value (``r_kv -> d_v``) up-projections."""
    rows = tokens() * S.n_h
    return site.op(
        name,
        matmul_flops=2 * rows * n_in * n_out,
        weight_bytes=S.n_h * n_in * n_out * S.B_w,
        act_read_bytes=rows * n_in * S.B_a,
        act_write_bytes=rows * n_out * S.B_a,
        saved_bytes=rows * n_in * S.B_a,
        gemm=(rows, n_out, n_in),
    )


def _latent(site: Site, att: LatentAttention, options: Options) -> Block:
    """MLA in one of three forms (see ``Options.mla``). Naive: expand the new tokens'
    K/V with ``kv_b_proj``, cache them, attend like MHA over ``d_nope + d_rope``.
    Expand: cache the latent, expand every key (cached and new) each step. Absorbed:
    fold ``kv_b_proj``'s key half into the queries and its value half after PV, so
    attention runs MQA-like over the cached latent."""
    qk_head = S.d_nope + S.d_rope
    if att.q_lora_rank is None:
        block = linear(site, "attn.q_proj", S.d, S.n_h * qk_head, "attention")
    else:
        block = (
            linear(site, "attn.q_a_proj", S.d, S.r_q, "attention", bias=att.bias)
            + norm(site, "attn.q_a_norm", S.r_q, "rms", False)
            + linear(site, "attn.q_b_proj", S.r_q, S.n_h * qk_head, "attention")
        )
    # the query projection already keeps the shared input x for backward
    block += linear(site, "attn.kv_a_proj", S.d, S.r_kv + S.d_rope, "attention", bias=att.bias, save_input=False)
    block += norm(site, "attn.kv_a_norm", S.r_kv, "rms", False)
    block += Block((), _rope(site, S.n_h + 1, S.d_rope))
    kv_b_out = S.n_h * (S.d_nope + S.d_v)
    form = options.mla_form
    if form == "naive":
        block += linear(site, "attn.kv_b_proj", S.r_kv, kv_b_out, "attention")
        block += Block((), _cache_write(site, att, options))
        block += Block((), attention_core(
            site, att, options, heads=S.n_h, qk_dim=qk_head, v_dim=S.d_v,
            k_per_key=S.n_h * qk_head, v_per_key=S.n_h * S.d_v,
        ))
    elif form == "expand":
        block += Block((), _cache_write(site, att, options))
        expand = linear(site, "attn.kv_b_proj", S.r_kv, kv_b_out, "attention", rows=S.b * keys_read(att))
        tensors, (op,) = expand.tensors, expand.ops
        if options.caching:
            # the cached tokens' latents (and RoPE keys) come from the cache, the new ones from kv_a_proj
            cached = S.b * cached_tokens(att, S.t)
            op = replace(op, act_read_bytes=tokens() * S.r_kv * S.B_a, kv_read_bytes=cached * (S.r_kv + S.d_rope) * S.B_kv)
        block += Block(tensors, (op,))
        block += Block((), attention_core(
            site, att, options, heads=S.n_h, qk_dim=qk_head, v_dim=S.d_v,
            k_per_key=S.n_h * qk_head, v_per_key=S.n_h * S.d_v, from_cache=False,
        ))
    else:
        # kv_b_proj's weight, read in two halves by the absorbed projections
        block += Block((site.tensor("attn.kv_b_proj.weight", (kv_b_out, S.r_kv), "attention"),), _cache_write(site, att, options))
        absorb_q = _per_head(site, "attn.q_absorb", S.d_nope, S.r_kv)
        qk, softmax, pv = attention_core(
            site, att, options, heads=S.n_h, qk_dim=S.r_kv + S.d_rope, v_dim=S.r_kv,
            k_per_key=S.r_kv + S.d_rope,
            v_per_key=ZERO,  # the latent read for the scores serves as the values
        )
        absorb_v = _per_head(site, "attn.v_absorb", S.r_kv, S.d_v)
        block += Block((), (absorb_q, qk, softmax, pv, absorb_v))
    return block + linear(site, "attn.o_proj", S.n_h * S.d_v, S.d, "attention", bias=att.bias)
