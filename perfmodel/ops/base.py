"""Weight tensors, operators and the small builders every block uses.

An ``Op`` is one kernel-sized piece of work for one layer, as sympy expressions over
the symbols in :mod:`perfmodel.symbols`; ``repeat`` says how many layers run it.
Byte kinds stay apart (weights, activations, KV cache; read vs written) so the
roofline and the memory model can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import reduce
from typing import TYPE_CHECKING
from operator import mul

from sympy import Expr, Integer, sympify

from perfmodel import symbols as S

if TYPE_CHECKING:
    from perfmodel.options import Options

ZERO = Integer(0)

#: FLOPs per element of elementwise work (a convention, stated once; matmul counters ignore these)
ELEMENTWISE_FLOPS = {
    "rms_norm": 4,  # square, sum, scale by rsqrt, multiply by weight
    "layer_norm": 7,  # mean, subtract, square, sum, scale, weight, bias
    "nonparametric_norm": 5,  # LayerNorm without weight and bias
    "softmax": 5,  # max, subtract, exp, sum, divide
    "silu": 4,
    "gelu": 8,
    "gelu_tanh": 8,
    "relu": 1,
    "relu2": 2,
    "tanh": 4,  # BERT's pooler and RoBERTa's classifier
    "rope": 3,  # x*cos + rotate(x)*sin
    "add": 1,  # residual add, bias add, gating multiply
    "adam": 12,  # two moment updates, bias correction, sqrt, divide, weight update
}

#: bytes the FlashAttention backward keeps per query row and head: the fp32 log-sum-exp
LSE_BYTES = 4


@dataclass(frozen=True)
class Tensor:
    """A weight tensor of one layer (or of the model), with its symbolic shape."""

    name: str
    shape: tuple[Expr, ...]
    block: str  # embedding | attention | ffn | moe | norm | head | audio (Whisper's convolutions)
    repeat: Expr = Integer(1)
    #: routed-expert tensor: only k of its E experts are active per token
    routed: bool = False
    embedding: bool = False

    @property
    def numel(self) -> Expr:
        return reduce(mul, self.shape, Integer(1))


@dataclass(frozen=True)
class Op:
    """One operator of one layer: FLOPs, bytes by kind, activations kept for backward."""

    name: str
    repeat: Expr = Integer(1)
    group: str = "model"
    matmul_flops: Expr = ZERO
    vector_flops: Expr = ZERO
    weight_bytes: Expr = ZERO
    act_read_bytes: Expr = ZERO
    kv_read_bytes: Expr = ZERO
    act_write_bytes: Expr = ZERO
    kv_write_bytes: Expr = ZERO
    #: activation bytes this op keeps for the backward pass (training)
    saved_bytes: Expr = ZERO
    #: fwd | bwd | recompute | optimizer
    pass_: str = "fwd"
    #: the attention core (QK, softmax, PV) that selective recomputation re-runs
    core_attention: bool = False
    #: backward matmul FLOPs per forward matmul FLOP (2: dX and dW; 3 for FlashAttention's QK)
    backward_factor: int = 2
    #: a matrix product's shape ``(M, N, K)``: ``M`` rows (tokens) times a ``K × N`` weight,
    #: or ``(M, N, K, G)`` for a grouped GEMM (``G`` groups of ``M/G`` rows, each with its own
    #: weight: routed experts); the cost model's tile and wave quantization reads it (None: not a GEMM)
    gemm: tuple[Expr, ...] | None = None
    #: exponentials evaluated (softmax): the special-function units' work
    exps: Expr = ZERO

    @property
    def flops(self) -> Expr:
        return self.matmul_flops + self.vector_flops

    @property
    def bytes(self) -> Expr:
        return self.weight_bytes + self.act_read_bytes + self.kv_read_bytes + self.act_write_bytes + self.kv_write_bytes

    def subs(self, mapping: dict) -> Op:
        """The same op with symbols replaced (fixing a phase, say)."""
        gemm = None if self.gemm is None else tuple(sympify(x).subs(mapping) for x in self.gemm)
        return replace(self, gemm=gemm, **{f: sympify(getattr(self, f)).subs(mapping) for f in EXPR_FIELDS})


EXPR_FIELDS = (
    "repeat",
    "matmul_flops",
    "vector_flops",
    "weight_bytes",
    "act_read_bytes",
    "kv_read_bytes",
    "act_write_bytes",
    "kv_write_bytes",
    "saved_bytes",
    "exps",
)
BYTE_FIELDS = ("weight_bytes", "act_read_bytes", "kv_read_bytes", "act_write_bytes", "kv_write_bytes")

@dataclass(frozen=True)
class Block:
    """What a builder returns: the weight tensors it owns and the ops it runs."""

    tensors: tuple[Tensor, ...] = ()
    ops: tuple[Op, ...] = ()

    def __add__(self, other: Block) -> Block:
        return Block(self.tensors + other.tensors, self.ops + other.ops)


@dataclass(frozen=True)
class Site:
    """Where a builder's output goes: the layer group (its repeat symbol) and dotted prefix."""

    repeat: Expr = Integer(1)
    group: str = "model"

    def tensor(self, name: str, shape, block: str, **kw) -> Tensor:
        return Tensor(name, tuple(sympify(x) for x in shape), block, repeat=self.repeat, **kw)

    def op(self, name: str, **kw) -> Op:
        return Op(name, repeat=self.repeat, group=self.group, **kw)


def tokens() -> Expr:
    """Tokens processed in this step: ``b·s``."""
    return S.b * S.s


def linear(
    site: Site,
    name: str,
    n_in: Expr,
    n_out: Expr,
    block: str,
    *,
    bias: bool = False,
    rows: Expr | None = None,
    save_input: bool = True,
) -> Block:
    """A dense projection ``y = x·W (+ b)`` over ``rows`` tokens (default ``b·s``).

    Matmul FLOPs ``2·rows·n_in·n_out``; the bias add counts as elementwise work.
    ``save_input``: the backward pass needs ``x`` (say False when a sibling projection
    reading the same ``x`` already keeps it).
    """
    rows = tokens() if rows is None else rows
    tensors = [site.tensor(f"{name}.weight", (n_out, n_in), block)]
    if bias:
        tensors.append(site.tensor(f"{name}.bias", (n_out,), block))
    weights = sum((t.numel for t in tensors), ZERO)
    op = site.op(
        name,
        matmul_flops=2 * rows * n_in * n_out,
        vector_flops=rows * n_out * ELEMENTWISE_FLOPS["add"] if bias else ZERO,
        weight_bytes=weights * S.B_w,
        act_read_bytes=rows * n_in * S.B_a,
        act_write_bytes=rows * n_out * S.B_a,
        saved_bytes=rows * n_in * S.B_a if save_input else ZERO,
        gemm=(rows, n_out, n_in),
    )
    return Block(tuple(tensors), (op,))


def norm(site: Site, name: str, width: Expr, kind: str, bias: bool, *, rows: Expr | None = None) -> Block:
    """A normalisation over ``width`` features of ``rows`` vectors; keeps its input for backward."""
    rows = tokens() if rows is None else rows
    tensors = []
    if kind != "nonparametric":
        tensors.append(site.tensor(f"{name}.weight", (width,), "norm"))
        if bias:
            tensors.append(site.tensor(f"{name}.bias", (width,), "norm"))
    cost = {"rms": "rms_norm", "layer": "layer_norm", "nonparametric": "nonparametric_norm"}[kind]
    elements = rows * width
    op = site.op(
        name,
        vector_flops=elements * ELEMENTWISE_FLOPS[cost],
        weight_bytes=sum((t.numel for t in tensors), ZERO) * S.B_w,
        act_read_bytes=elements * S.B_a,
        act_write_bytes=elements * S.B_a,
        saved_bytes=elements * S.B_a,
    )
    return Block(tuple(tensors), (op,))


def elementwise(
    site: Site, name: str, elements: Expr, flops_per_element: int, *, inputs: int = 1, saved: Expr = ZERO
) -> Op:
    """An elementwise op over ``elements`` outputs reading ``inputs`` operands of the same size."""
    return site.op(
        name,
        vector_flops=elements * flops_per_element,
        act_read_bytes=inputs * elements * S.B_a,
        act_write_bytes=elements * S.B_a,
        saved_bytes=saved,
    )


def residual(site: Site, name: str, options: Options, *, branches: int = 1) -> Op:
    """``x + f(x)`` (or ``x + f(x) + g(x)`` for parallel blocks) over the hidden state;
    with dropout, training keeps a 1-byte mask per branch."""
    elements = tokens() * S.d
    mask = branches * elements if options.dropout and options.training else ZERO
    return elementwise(site, name, elements, branches * ELEMENTWISE_FLOPS["add"], inputs=branches + 1, saved=mask)
