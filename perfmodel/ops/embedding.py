"""Model-level operators: token and position embeddings, the final norm, the LM head, the loss."""

from __future__ import annotations

from sympy import Expr, Integer

from perfmodel import symbols as S
from perfmodel.architecture import Architecture
from perfmodel.ops.base import ELEMENTWISE_FLOPS, ZERO, Block, Op, Site, norm, tokens
from perfmodel.options import Options

MODEL = Site()
FP32_BYTES = Integer(4)


def embeddings(arch: Architecture, options: Options) -> Block:
    """Token lookup (a gather: one table row read per token) and learned absolute
    positions if any (the same ``s`` rows for every sequence). With dropout, training
    keeps the embedding dropout's 1-byte mask (Korthikanti et al. 2022, §4.3: ``sbh``)."""
    mask = tokens() * S.d if options.dropout and options.training else ZERO
    learned = arch.max_position_embeddings is not None
    table = MODEL.tensor("embed.tokens.weight", (S.V, S.d), "embedding", embedding=True)
    lookup = MODEL.op(
        "embed.tokens",
        weight_bytes=tokens() * S.d * S.B_e,
        act_write_bytes=tokens() * S.d * S.B_a,
        saved_bytes=ZERO if learned else mask,
    )
    block = Block((table,), (lookup,))
    if learned:
        rows = S.P + (arch.encoder.position_offset if arch.encoder else 0)  # BART keeps 2 rows more
        block += learned_positions(rows, mask)
    return block


def learned_positions(rows: Expr, saved: Expr = ZERO) -> Block:
    """A table of ``rows`` learned positions; the step adds the same ``s`` rows to every sequence."""
    positions = MODEL.tensor("embed.positions.weight", (rows, S.d), "embedding", embedding=True)
    add = MODEL.op(
        "embed.positions",
        vector_flops=tokens() * S.d * ELEMENTWISE_FLOPS["add"],
        weight_bytes=S.s * S.d * S.B_e,
        act_read_bytes=tokens() * S.d * S.B_a,
        act_write_bytes=tokens() * S.d * S.B_a,
        saved_bytes=saved,
    )
    return Block((positions,), (add,))


def head(arch: Architecture, options: Options) -> Block:
    """Final norm, then logits for every new token (training, decode) or only the last
    (a generation prefill), then in training the cross-entropy loss."""
    final = arch.final_norm
    block = norm(MODEL, "final_norm", S.d, final.kind, final.bias) if final is not None else Block()
    rows = tokens() if options.logits_for_all else S.b
    tensors = () if arch.tie_word_embeddings else (MODEL.tensor("lm_head.weight", (S.V, S.d), "head", embedding=True),)
    # a bias on the logits (Phi-1/2) stays untied: V parameters, one add per logit
    bias = (MODEL.tensor("lm_head.bias", (S.V,), "head"),) if arch.lm_head_bias else ()
    logits = MODEL.op(
        "lm_head",
        matmul_flops=2 * rows * S.d * S.V,
        vector_flops=rows * S.V * ELEMENTWISE_FLOPS["add"] if arch.lm_head_bias else ZERO,
        weight_bytes=(S.V * S.d + (S.V if arch.lm_head_bias else 0)) * S.B_e,
        act_read_bytes=rows * S.d * S.B_a,
        act_write_bytes=rows * S.V * S.B_a,
        saved_bytes=rows * S.d * S.B_a,
        gemm=(rows, S.V, S.d),
    )
    block += Block(tensors + bias, (logits,))
    if options.training:
        block += Block((), (loss(rows),))
    return block


def loss(rows: Expr) -> Op:
    """Cross-entropy over the vocabulary for ``rows`` logits."""
    return MODEL.op(
        "loss",
        vector_flops=rows * S.V * ELEMENTWISE_FLOPS["softmax"],
        act_read_bytes=rows * S.V * S.B_a,
        act_write_bytes=rows * FP32_BYTES,
        # the fp32 probabilities: the loss runs on upcast logits (transformers'
        # ForCausalLMLoss, Megatron; Korthikanti et al. 2022, §4.3: 4sbv bytes)
        saved_bytes=rows * S.V * FP32_BYTES,
    )
