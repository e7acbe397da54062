"""Cross-attention of an encoder-decoder's decoder layer: queries from the ``s`` new
target tokens, keys and values from the encoder's output over the ``s_enc`` source tokens.

The source K/V are projected once per request, in the step that runs the encoder (a
prefill, or training), and at inference written to the cross-attention cache; every
decode step reads them from there. Every query sees every source key (no mask).
"""

from __future__ import annotations

from dataclasses import replace

from sympy import Expr

from perfmodel import symbols as S
from perfmodel.architecture import Attention
from perfmodel.ops.attention import attention_core, key_bias
from perfmodel.ops.base import Block, Site, linear
from perfmodel.options import Options


def cross_kv_elements_per_source_token() -> Expr:
    """Cross-cache elements one source token adds to one decoder layer: its K and V."""
    return 2 * S.n_kv * S.d_h


def runs_encoder(options: Options) -> bool:
    """The encoder (and the source K/V projections) run in a prefill or a training step;
    a decode step reuses the cached cross-attention K/V."""
    return options.phase != "decode"


def cross_attention_block(site: Site, att: Attention, options: Options) -> Block:
    """q from the decoder stream; k, v from the encoder output (once); attention over the
    source; output projection."""
    q_width, kv_width = S.n_h * S.d_h, S.n_kv * S.d_h
    source_rows = S.b * S.s_enc
    block = linear(site, "xattn.q_proj", S.d, q_width, "attention", bias=att.qkv_bias)
    if runs_encoder(options):
        block += linear(site, "xattn.k_proj", S.d, kv_width, "attention", bias=key_bias(att), rows=source_rows)
        block += linear(site, "xattn.v_proj", S.d, kv_width, "attention", bias=att.qkv_bias, rows=source_rows, save_input=False)
        if options.caching:
            elements = source_rows * cross_kv_elements_per_source_token()
            block += Block((), (site.op("xattn.kv_cache_write", act_read_bytes=elements * S.B_a, kv_write_bytes=elements * S.B_kv),))
    qk, softmax, pv = attention_core(
        site, att, options, heads=S.n_h, qk_dim=S.d_h, v_dim=S.d_h,
        k_per_key=kv_width, v_per_key=kv_width, from_cache=options.caching, source_keys=S.s_enc,
    )
    names = {"attn.qk": "xattn.qk", "attn.softmax": "xattn.softmax", "attn.pv": "xattn.pv"}
    core = tuple(replace(op, name=names[op.name]) for op in (qk, softmax, pv))
    block += Block((), core)
    return block + linear(site, "xattn.o_proj", q_width, S.d, "attention", bias=att.o_bias)
