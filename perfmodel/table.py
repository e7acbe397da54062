"""Architecture × options -> the operator table: every weight tensor and every operator.

One builder serves every phase: ``s`` new tokens per sequence against ``t`` cached
ones (decode is ``s = 1``, prefill ``t = 0``). Training adds the recomputed forward
ops, a backward op per forward op (2× its matmul FLOPs: dX and dW; FlashAttention's
QKᵀ 3×, as it recomputes the scores) and the optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from sympy import Expr, Integer

from perfmodel import symbols as S
from perfmodel.architecture import Architecture, Layer, MoE
from perfmodel.encdec import check_phase, encoder_block, encoder_heads, logit_scale, relative_bias, stack_embeddings
from perfmodel.ops.attention import attention_block
from perfmodel.ops.cross_attention import cross_attention_block
from perfmodel.ops.base import BYTE_FIELDS, ZERO, Block, Op, Site, Tensor, norm, residual
from perfmodel.ops.embedding import embeddings, head
from perfmodel.ops.ffn import dense_block, moe_block
from perfmodel.ops.optimizer import optimizer_step
from perfmodel.options import Options


def layer_block(site: Site, layer: Layer, options: Options) -> Block:
    """One layer: norms, attention, residual, FFN or MoE, residual (or one shared
    residual for parallel blocks, whose FFN reads the attention's input)."""

    def maybe_norm(position: str) -> Block:
        if position not in layer.norms:
            return Block()
        return norm(site, position, S.d, layer.norm.kind, layer.norm.bias)

    block = maybe_norm("attn.norm")
    if layer.attention is not None:
        block += attention_block(site, layer, options)
    block += maybe_norm("attn.post_norm")
    if not layer.parallel:
        block += Block((), (residual(site, "attn.residual", options),))
    if layer.cross_attention is not None:
        block += maybe_norm("xattn.norm") + cross_attention_block(site, layer.cross_attention, options)
        block += maybe_norm("xattn.post_norm") + Block((), (residual(site, "xattn.residual", options),))
    block += maybe_norm("ffn.norm")
    block += moe_block(site, layer.ffn) if isinstance(layer.ffn, MoE) else dense_block(site, layer.ffn)
    block += maybe_norm("ffn.post_norm")
    branches = 2 if layer.parallel else 1
    return block + Block((), (residual(site, "ffn.residual", options, branches=branches),))


def backward(op: Op) -> Op:
    """The backward of ``op``: ``backward_factor``× its matmul FLOPs, 2× its other work."""
    doubled = {f: 2 * getattr(op, f) for f in BYTE_FIELDS}
    return replace(
        op,
        pass_="bwd",
        matmul_flops=op.backward_factor * op.matmul_flops,
        vector_flops=2 * op.vector_flops,
        saved_bytes=ZERO,
        **doubled,
    )


@dataclass(frozen=True)
class Table:
    """The weight tensors and the operators of one model run one way."""

    arch: Architecture
    options: Options
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    #: symbol substitutions that made this one GPU's table (``perfmodel.sharding``): the
    #: per-GPU KV cache is the model's with them applied; empty for a whole model
    per_gpu: tuple = ()

    @cached_property
    def params(self) -> Expr:
        """Total parameters: every tensor's elements times the layers that have it."""
        return sum((t.numel * t.repeat for t in self.tensors), Integer(0))


def build(arch: Architecture, options: Options = Options()) -> Table:
    """The operator table of ``arch`` for ``options`` (phase and implementation).
    Encoder-decoder models run their encoder first (see ``encdec``); encoder-only ones
    end in their own heads."""
    if arch.encoder is None:
        block = embeddings(arch, options)
    else:
        check_phase(arch, options)
        block = encoder_block(arch, options, layer_block) if arch.kind == "encoder-decoder" else Block()
        block += stack_embeddings(arch, options)
    for group in arch.groups:
        site = Site(group.repeat, group.label)
        if arch.encoder is not None and group is arch.groups[0]:
            block += relative_bias(arch, site)
        block += layer_block(site, group.layer, options)
    if arch.kind == "encoder":
        block += encoder_heads(arch, options)
    else:
        block += (logit_scale(arch, options) if arch.encoder else Block()) + head(arch, options)
    table = Table(arch, options, block.tensors, block.ops)
    if not options.training:
        return table
    ops = block.ops
    if options.recompute == "selective":
        again = tuple(replace(op, pass_="recompute", saved_bytes=ZERO) for op in ops if op.core_attention)
    elif options.recompute == "full":
        again = tuple(replace(op, pass_="recompute", saved_bytes=ZERO) for op in ops if op.group != "model")
    else:
        again = ()
    ops = ops + again + tuple(backward(op) for op in ops) + (optimizer_step(table.params, options.optimizer),)
    return replace(table, ops=ops)
