"""Metrics as sums and ratios over the operator table: parameters, KV cache, FLOPs,
bytes and arithmetic intensity. Each is an expression; nothing is computed twice."""

from __future__ import annotations

from sympy import Expr, Integer

from perfmodel import symbols as S
from perfmodel.architecture import Architecture
from perfmodel.ops.attention import cached_tokens, kv_elements_per_token
from perfmodel.ops.base import BYTE_FIELDS, Op
from perfmodel.ops.cross_attention import cross_kv_elements_per_source_token
from perfmodel.options import Options
from perfmodel.table import Table

ZERO = Integer(0)

#: per-op quantities that sum over the table
OP_FIELDS = ("flops", "matmul_flops", "vector_flops", "bytes") + BYTE_FIELDS


def params(table: Table) -> dict[str, Expr]:
    """Parameter counts: total, embeddings (token, position, untied LM head), active per token.

    ``embedding_params`` counts every vocabulary or position matrix (the input table,
    learned positions and an untied output head), as Kaplan et al. and Pythia do;
    ``active_params`` counts ``k`` of the ``E`` routed experts of each MoE layer.
    """

    def total(tensors) -> Expr:
        return sum((t.numel * t.repeat for t in tensors), ZERO)

    by_name = {t.name: t for t in table.tensors}
    embedding = total(t for t in table.tensors if t.embedding)
    idle_experts = total(t for t in table.tensors if t.routed) * (S.E - S.k) / S.E
    return {
        "total_params": table.params,
        "embedding_params": embedding,
        "non_embedding_params": table.params - embedding,
        "active_params": table.params - idle_experts,
        # an encoder-decoder's encoder may have its own tables (``encoder.embed.*``; untied BART's ``shared``)
        "token_embedding_params": total([t for n, t in by_name.items() if n.endswith("embed.tokens.weight") or n == "shared.weight"]),
        "position_embedding_params": total([t for n, t in by_name.items() if n.endswith("embed.positions.weight")]),
        "lm_head_params": total([t for n, t in by_name.items() if n == "lm_head.weight"]),
    }


def _cached_groups(arch: Architecture):
    """Layer groups whose self-attention caches K/V (an encoder's bidirectional one does not)."""
    return [g for g in arch.groups if g.layer.attention and g.layer.attention.causal]


def kv_cache_bytes_per_token(arch: Architecture, options: Options = Options(phase="decode")) -> Expr:
    """KV-cache bytes one token of context adds across all attention layers (before any
    sliding window fills up)."""
    return sum(
        (g.repeat * kv_elements_per_token(g.layer.attention, options) * S.B_kv for g in _cached_groups(arch)),
        ZERO,
    )


def self_kv_cache_bytes(arch: Architecture, options: Options = Options(phase="decode"), context: Expr = S.t) -> Expr:
    """Self-attention cache of ``b`` sequences of ``context`` tokens; windowed layers keep at most ``W − 1``."""
    return S.b * sum(
        (
            g.repeat * kv_elements_per_token(g.layer.attention, options) * S.B_kv * cached_tokens(g.layer.attention, context)
            for g in _cached_groups(arch)
        ),
        ZERO,
    )


def cross_kv_cache_bytes(arch: Architecture) -> Expr:
    """An encoder-decoder's cross-attention cache: each decoder layer keeps the K and V of
    all ``s_enc`` source tokens, fixed for the whole request (zero for other models)."""
    per_token = sum((g.repeat * cross_kv_elements_per_source_token() for g in arch.groups if g.layer.cross_attention), ZERO)
    return S.b * S.s_enc * per_token * S.B_kv


def kv_cache_bytes(arch: Architecture, options: Options = Options(phase="decode"), context: Expr = S.t) -> Expr:
    """All cached K/V for ``b`` sequences of ``context`` tokens: self-attention, plus the
    cross-attention cache of an encoder-decoder."""
    return self_kv_cache_bytes(arch, options, context) + cross_kv_cache_bytes(arch)


def op_total(op: Op, field: str) -> Expr:
    """``field`` of ``op`` over all the layers that run it."""
    return getattr(op, field) * op.repeat


def totals(ops, fields=OP_FIELDS) -> dict[str, Expr]:
    """Each field summed over ``ops`` (and their repeats)."""
    return {f: sum((op_total(op, f) for op in ops), ZERO) for f in fields}


def intensity(flops: Expr, nbytes: Expr) -> Expr:
    """Arithmetic intensity, FLOP per byte moved."""
    return flops / nbytes
