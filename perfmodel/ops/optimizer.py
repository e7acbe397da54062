"""Training recipes (bytes per parameter) and the optimizer-step operator.

Weights take ``B_w`` bytes (the ``--weight-dtype``); a recipe adds gradients and
optimizer states:

- ``mixed``: ZeRO (Rajbhandari et al. 2019, §3.1): fp16/bf16 gradients (2) and fp32
  master weights, momentum and variance (12): 16 bytes per parameter with bf16 weights.
- ``megatron-bf16``: Megatron-LM distributed-optimizer table: bf16 parameters, fp32
  gradients (4) and 12 bytes of fp32 states: 18.
- ``megatron-fp16``: fp16 parameters and gradients (2) plus fp32 main gradients (4)
  and 12 bytes of states: 20.
- ``fp32``: fp32 gradients (4) and Adam moments (8): 16 with fp32 weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import Expr, Integer

from perfmodel import symbols as S
from perfmodel.ops.base import ELEMENTWISE_FLOPS, Op


@dataclass(frozen=True)
class Recipe:
    gradient_bytes: int
    optimizer_bytes: int
    source: str


RECIPES = {
    "mixed": Recipe(2, 12, "ZeRO, Rajbhandari et al. 2019, §3.1 (2 + 2 + 12 = 16 bytes/param)"),
    "megatron-bf16": Recipe(4, 12, "Megatron-LM distributed optimizer docs: bf16 params, fp32 grads (18)"),
    "megatron-fp16": Recipe(6, 12, "Megatron-LM distributed optimizer docs: fp16 params and grads (20)"),
    "fp32": Recipe(4, 8, "fp32 Adam: weights 4 + grads 4 + moments 8 (16)"),
}


def optimizer_step(params: Expr, recipe: str) -> Op:
    """One Adam update: read gradients and states, write states and the new weights."""
    r = RECIPES[recipe]
    return Op(
        "optimizer.step",
        vector_flops=params * ELEMENTWISE_FLOPS["adam"],
        act_read_bytes=params * (Integer(r.gradient_bytes) + r.optimizer_bytes),
        act_write_bytes=params * r.optimizer_bytes,
        weight_bytes=params * S.B_w,
        pass_="optimizer",
    )
