"""Memory: weights, KV cache, activations, gradients and optimizer states.

Activations in training are the bytes each forward op keeps for the backward pass,
summed over layers. For a GPT-style layer with naive attention and dropout this is
Korthikanti et al. 2022, Eq. 1, ``sbh(34 + 5as/h)`` bytes (16-bit activations); full
recomputation keeps only each layer's input (``2sbh`` per layer) plus one layer's
working set while it is recomputed. At inference, activations are the largest live
set of one operator (its inputs plus outputs), e.g. the score matrix of a naive
attention or the logits.
"""

from __future__ import annotations

from sympy import Expr, Integer, Max

from perfmodel import symbols as S
from perfmodel.metrics import kv_cache_bytes
from perfmodel.ops.base import tokens
from perfmodel.ops.optimizer import RECIPES
from perfmodel.table import Table

ZERO = Integer(0)


def training_activation_bytes(table: Table) -> Expr:
    """Activation bytes kept for the backward pass of one training step."""
    forward = [op for op in table.ops if op.pass_ == "fwd"]
    if table.options.recompute != "full":
        return sum((op.saved_bytes * op.repeat for op in forward), ZERO)
    model_level = sum((op.saved_bytes for op in forward if op.group == "model"), ZERO)
    per_layer = {}
    for op in forward:
        if op.group != "model":
            per_layer[op.group] = per_layer.get(op.group, ZERO) + op.saved_bytes
    checkpoints = S.L * tokens() * S.d * S.B_a
    if table.arch.kind == "encoder-decoder":  # the encoder layers' inputs, over the source
        checkpoints += S.L_enc * S.b * S.s_enc * S.d * S.B_a
    return checkpoints + Max(*set(per_layer.values()), evaluate=False) + model_level


def inference_activation_bytes(table: Table) -> Expr:
    """The largest live set of one forward operator: what it reads plus what it writes."""
    live = {op.act_read_bytes + op.act_write_bytes for op in table.ops if op.pass_ == "fwd"}
    # unevaluated: sympy would otherwise try to order the symbolic terms (slow); the
    # maximum is taken when numbers are substituted
    return Max(*live, evaluate=False)


def memory(table: Table) -> dict[str, Expr]:
    """Bytes by kind for the table's phase. Inference holds the KV cache as it stands
    after the step (``t + s`` tokens per sequence) and the step's largest working set;
    training holds gradients, optimizer states and activations."""
    weights = sum((t.numel * t.repeat * (S.B_e if t.embedding else S.B_w) for t in table.tensors), ZERO)
    if table.options.training:
        recipe = RECIPES[table.options.optimizer]
        parts = {
            "weights_bytes": weights,
            "kv_cache_bytes": ZERO,
            "activation_bytes": training_activation_bytes(table),
            "gradient_bytes": table.params * recipe.gradient_bytes,
            "optimizer_bytes": table.params * recipe.optimizer_bytes,
        }
    else:
        parts = {
            "weights_bytes": weights,
            "kv_cache_bytes": kv_cache_bytes(table.arch, table.options, S.t + S.s).xreplace(dict(table.per_gpu)),
            "activation_bytes": inference_activation_bytes(table),
            "gradient_bytes": ZERO,
            "optimizer_bytes": ZERO,
        }
    parts["total_bytes"] = sum(parts.values(), ZERO)
    return parts
