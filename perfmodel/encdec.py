"""Encoder-decoder (T5, BART) and encoder-only (BERT, RoBERTa) models: the encoder
stack, what their embeddings add, T5's relative-position bias, and BERT's heads.

The encoder stack is built by the same layer builder as any decoder, over ``s`` new
tokens against ``t`` cached, and then read over the source: ``s -> s_enc``, ``t -> 0``.
Its attention is bidirectional (``Attention.causal = False``): every source token sees
every other, and nothing is cached. It runs in a prefill (before the decoder's first
step) and in training; a decode step only reads the cross-attention cache it left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sympy import Integer

from perfmodel import symbols as S
from perfmodel.architecture import Architecture, Layer
from perfmodel.errors import PerfmodelError
from perfmodel.ops.base import ELEMENTWISE_FLOPS, ZERO, Block, Site, elementwise, linear, norm, tokens
from perfmodel.ops.cross_attention import runs_encoder
from perfmodel.ops.embedding import MODEL, embeddings, learned_positions, loss
from perfmodel.options import Options

ENCODER = "encoder."


def check_phase(arch: Architecture, options: Options) -> None:
    """An encoder-only model has no decode phase: it keeps no cache and generates nothing."""
    if arch.kind == "encoder" and options.phase == "decode":
        raise PerfmodelError(
            f"{arch.name} is an encoder-only model ({arch.family}): it has no decode phase and no KV cache; "
            "it runs one forward pass over its input (phase prefill) or a training step"
        )


def stack_embeddings(arch: Architecture, options: Options) -> Block:
    """One stack's input: token lookup, learned positions, token types (BERT), the
    embedding norm (BART's layernorm_embedding, BERT's LayerNorm)."""
    block = embeddings(arch, options)
    enc = arch.encoder
    if enc.token_types:
        table = MODEL.tensor("embed.token_types.weight", (Integer(enc.token_types), S.d), "embedding", embedding=True)
        add = MODEL.op(
            "embed.token_types",
            vector_flops=tokens() * S.d * ELEMENTWISE_FLOPS["add"],
            weight_bytes=tokens() * S.d * S.B_e,
            act_read_bytes=tokens() * S.d * S.B_a,
            act_write_bytes=tokens() * S.d * S.B_a,
        )
        block += Block((table,), (add,))
    if enc.embedding_norm is not None:
        block += norm(MODEL, "embed.norm", S.d, enc.embedding_norm.kind, enc.embedding_norm.bias)
    return block


def relative_bias(arch: Architecture, layer_site: Site) -> Block:
    """T5's bias table (``n_rb`` buckets × ``n_h`` heads) and the lookup that turns it into an
    ``n_h × s × keys`` bias: once per stack (T5, mT5), or in every layer (umT5)."""
    enc = arch.encoder
    if not enc.relative_buckets:
        return Block()
    site = layer_site if enc.relative_bias_per_layer else MODEL
    table = site.tensor("attn.relative_bias.weight", (S.n_rb, S.n_h), "attention")
    lookup = site.op(
        "attn.relative_bias",
        weight_bytes=S.n_rb * S.n_h * S.B_w,
        act_write_bytes=S.n_h * S.s * (S.t + S.s) * S.B_a,
    )
    return Block((table,), (lookup,))


def _prefixed(block: Block, prefix: str) -> Block:
    return Block(
        tuple(replace(t, name=prefix + t.name) for t in block.tensors),
        tuple(replace(op, name=prefix + op.name) for op in block.ops),
    )


def encoder_block(arch: Architecture, options: Options, layer_block: Callable[[Site, Layer, Options], Block]) -> Block:
    """The encoder of an encoder-decoder over ``s_enc`` source tokens. Its tensors always
    count; its operators run only in a step that runs the encoder (see ``runs_encoder``).
    The token table is the decoder's (shared), except in an untied BART; positions are the
    encoder's own."""
    (group,) = arch.encoder_groups
    site = Site(group.repeat, group.label)
    enc = arch.encoder
    if enc.mel_bins:
        block = audio_frontend(arch)
    else:
        block = stack_embeddings(arch, options)
        if enc.separate_token_tables:
            block += Block((MODEL.tensor("shared.weight", (S.V, S.d), "embedding", embedding=True),), ())
        else:  # the decoder's table serves both stacks
            block = Block(tuple(t for t in block.tensors if t.name != "embed.tokens.weight"), block.ops)
    block += relative_bias(arch, site)
    block += layer_block(site, group.layer, options)
    final = enc.final_norm
    if final is not None:
        block += norm(MODEL, "final_norm", S.d, final.kind, final.bias)
    block = _prefixed(block, ENCODER)
    over_source = {S.s: S.s_enc, S.t: ZERO}
    ops = tuple(op.subs(over_source) for op in block.ops) if runs_encoder(options) else ()
    return Block(block.tensors, ops)


def _conv(name: str, n_in, n_out, frames_in, frames_out) -> Block:
    """A kernel-3 1-D convolution with bias, ``n_in -> n_out`` channels, then its GELU:
    ``2·b·frames_out·n_out·3·n_in`` FLOPs (as a matmul over unfolded windows)."""
    shape = (n_out, n_in, Integer(3))
    tensors = (MODEL.tensor(f"{name}.weight", shape, "audio"), MODEL.tensor(f"{name}.bias", (n_out,), "audio"))
    out = S.b * frames_out * n_out
    conv = MODEL.op(
        name,
        matmul_flops=2 * out * 3 * n_in,
        vector_flops=out * ELEMENTWISE_FLOPS["add"],
        weight_bytes=(3 * n_in * n_out + n_out) * S.B_w,
        gemm=(S.b * frames_out, n_out, 3 * n_in),
        act_read_bytes=S.b * frames_in * n_in * S.B_a,
        act_write_bytes=out * S.B_a,
        saved_bytes=S.b * frames_in * n_in * S.B_a,
    )
    act = elementwise(MODEL, f"{name}.act", out, ELEMENTWISE_FLOPS["gelu"], saved=out * S.B_a)
    return Block(tensors, (conv, act))


def audio_frontend(arch: Architecture) -> Block:
    """Whisper's encoder input: ``2·s`` log-mel frames through conv1 (``mel -> d``) and conv2
    (stride 2, ``d -> d``), then its own (frozen, still a parameter) position table."""
    mel = Integer(arch.encoder.mel_bins)
    block = _conv("conv1", mel, S.d, 2 * S.s, 2 * S.s) + _conv("conv2", S.d, S.d, 2 * S.s, S.s)
    return block + learned_positions(Integer(arch.encoder.source_positions))


def logit_scale(arch: Architecture, options: Options) -> Block:
    """T5 with a tied head scales the decoder output by ``d_model**-0.5`` before the logits."""
    if not arch.encoder.scale_logits:
        return Block()
    rows = tokens() if options.logits_for_all else S.b
    return Block((), (elementwise(MODEL, "lm_head.scale", rows * S.d, ELEMENTWISE_FLOPS["add"]),))


def encoder_heads(arch: Architecture, options: Options) -> Block:
    """An encoder-only model's end: its final norm if any, then the heads ``architectures``
    names: the pooler (first
    token, dense + tanh), the MLM head (dense, activation, LayerNorm, logits over the
    vocabulary for every token with the tied or own decoder and a bias), NSP, classifiers."""
    enc = arch.encoder
    heads = set(enc.heads)
    final = arch.final_norm  # a pre-norm encoder's last norm (T5EncoderModel); BERT has none
    block = norm(MODEL, "final_norm", S.d, final.kind, final.bias) if final is not None else Block()
    first = S.b  # the first ([CLS]) token of each sequence
    labels = Integer(enc.num_labels)
    if "pooler" in heads:
        block += linear(MODEL, "pooler.dense", S.d, S.d, "head", bias=True, rows=first)
        block += Block((), (elementwise(MODEL, "pooler.tanh", first * S.d, ELEMENTWISE_FLOPS["tanh"]),))
    if "mlm" in heads:
        block += linear(MODEL, "mlm.dense", S.d, S.d, "head", bias=True)
        act = arch.layers[0].ffn.activation
        block += Block((), (elementwise(MODEL, "mlm.act", tokens() * S.d, ELEMENTWISE_FLOPS[act], saved=tokens() * S.d * S.B_a),))
        block += norm(MODEL, "mlm.norm", S.d, "layer", True)
        decoder = linear(MODEL, "mlm.decoder", S.d, S.V, "head", bias=True)
        tensors = tuple(t for t in decoder.tensors if not (arch.tie_word_embeddings and t.name.endswith(".weight")))
        tensors = tuple(replace(t, embedding=t.name.endswith(".weight")) for t in tensors)
        if not arch.tie_word_embeddings:
            # untied, transformers also keeps the head's own bias apart from the decoder's (unread)
            tensors += (MODEL.tensor("mlm.bias", (S.V,), "head"),)
        # the (tied) vocabulary matrix and its bias in the embedding dtype, as the LM head's
        ops = tuple(replace(op, weight_bytes=(S.V * S.d + S.V) * S.B_e) for op in decoder.ops)
        block += Block(tensors, ops)
        if options.training:
            block += Block((), (loss(tokens()),))
    if "nsp" in heads:
        block += linear(MODEL, "nsp", S.d, Integer(2), "head", bias=True, rows=first)
    if "classifier" in heads:
        block += linear(MODEL, "classifier", S.d, labels, "head", bias=True, rows=first)
    if "roberta_classifier" in heads:
        block += linear(MODEL, "classifier.dense", S.d, S.d, "head", bias=True, rows=first)
        block += Block((), (elementwise(MODEL, "classifier.tanh", first * S.d, ELEMENTWISE_FLOPS["tanh"]),))
        block += linear(MODEL, "classifier.out_proj", S.d, labels, "head", bias=True, rows=first)
    if "choice" in heads:  # one score per (sequence, choice): the batch counts every choice
        block += linear(MODEL, "classifier", S.d, Integer(1), "head", bias=True, rows=first)
    if "token_classifier" in heads:
        block += linear(MODEL, "classifier", S.d, labels, "head", bias=True)
    return block
