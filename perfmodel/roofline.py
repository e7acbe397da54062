"""The one roofline: per-operator ``time = max(compute, memory)``, its bound, and the
batch-size balance point.

``compute = matmul_flops / (peak(dtype)·e_c) + vector_flops / (vector_peak·e_c)`` and
``memory = bytes / (bandwidth·e_m)``. The efficiencies ``e_c`` and ``e_m`` are 1 for the
pure roofline; the expected time uses achievable fractions (catalog defaults from
hw-notes §4, or the user's), kept apart from the peaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from sympy import Dummy, Expr, Integer, Max, Poly, PolynomialError, nsimplify, solve

from perfmodel import symbols as S
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import number, partial, vectorised
from perfmodel.metrics import op_total
from perfmodel.ops.base import Op

if TYPE_CHECKING:  # perfmodel needs from hardware only the Accelerator type
    from perfmodel.hardware.accelerator import Accelerator


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of the compute peak and of the memory bandwidth."""

    compute: float = 1.0
    bandwidth: float = 1.0

    def __post_init__(self):
        for name in ("compute", "bandwidth"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise PerfmodelError(f"{name} efficiency must be in (0, 1], got {value}")

    @classmethod
    def catalog_default(cls, acc: Accelerator) -> Efficiency:
        """The accelerator's catalog fractions; 1 where the catalog has none."""
        return cls(acc.matmul_efficiency or 1.0, acc.bandwidth_efficiency or 1.0)


@lru_cache(maxsize=256)
def _rate(value: float) -> Expr:
    """A rate or fraction as an exact sympy number (cached: nsimplify is slow)."""
    return nsimplify(value, rational=True) if not isinstance(value, int) else Integer(value)


@dataclass(frozen=True)
class Roof:
    """An accelerator's ceilings for one compute dtype, as exact sympy numbers."""

    peak: Expr
    vector_peak: Expr | None
    bandwidth: Expr
    efficiency: Efficiency = Efficiency()

    @classmethod
    def of(cls, acc: Accelerator, dtype: str, efficiency: Efficiency = Efficiency()) -> Roof:
        vector = acc.vector_peak
        return cls(
            _rate(acc.peak(dtype)),
            None if vector is None else _rate(vector),
            _rate(acc.memory_bandwidth_bytes_per_s),
            efficiency,
        )

    @property
    def ridge_point(self) -> Expr:
        """FLOP/byte where a matmul turns from memory- to compute-bound."""
        return (self.peak * _rate(self.efficiency.compute)) / (self.bandwidth * _rate(self.efficiency.bandwidth))

    def compute_time(self, matmul_flops: Expr, vector_flops: Expr) -> Expr:
        e = _rate(self.efficiency.compute)
        vector = Integer(0) if self.vector_peak is None else vector_flops / (self.vector_peak * e)
        return matmul_flops / (self.peak * e) + vector

    def memory_time(self, nbytes: Expr) -> Expr:
        return nbytes / (self.bandwidth * _rate(self.efficiency.bandwidth))


@dataclass(frozen=True)
class OpTime:
    """One operator's roofline over all its layers."""

    op: Op
    compute_s: Expr
    memory_s: Expr

    @property
    def time_s(self) -> Expr:
        return Max(self.compute_s, self.memory_s, evaluate=False)


def op_times(ops, roof: Roof) -> list[OpTime]:
    return [
        OpTime(
            op,
            roof.compute_time(op_total(op, "matmul_flops"), op_total(op, "vector_flops")),
            roof.memory_time(op_total(op, "bytes")),
        )
        for op in ops
    ]


def bound(compute_s, memory_s) -> str:
    """Which ceiling sets an operator's time: ``compute`` or ``memory``."""
    return "compute" if compute_s >= memory_s else "memory"


def step_time(times: list[OpTime]) -> Expr:
    """Time of a step: each operator runs at its own roofline, one after another."""
    return sum((t.time_s for t in times), Integer(0))


def step_terms(times: list[OpTime]) -> tuple[Expr, Expr]:
    """A step's total compute time and total memory time: the two sides the balance
    batch equates (and the two curves of the balance chart)."""
    return sum((t.compute_s for t in times), Integer(0)), sum((t.memory_s for t in times), Integer(0))


@dataclass(frozen=True)
class Balance:
    """Where compute time equals memory time as the batch grows (``batch`` None: nowhere)."""

    batch: Expr | float | None
    reason: str

    @property
    def exists(self) -> bool:
        return self.batch is not None


def _linear(expr: Expr, symbol) -> tuple[Expr, Expr] | None:
    """``(intercept, slope)`` if ``expr`` is linear in ``symbol``, else None."""
    try:
        poly = Poly(expr, symbol)
    except PolynomialError:
        return None
    if poly.degree() > 1:
        return None
    return poly.coeff_monomial(1), poly.coeff_monomial(symbol)


BATCH_LIMIT = 10**7


def balance_batch(compute_s: Expr, memory_s: Expr, values: dict) -> Balance:
    """The batch ``b`` solving ``compute_s(b) = memory_s(b)``, every other symbol bound by
    ``values``. Linear cases (dense models) are solved exactly with sympy ``solve``;
    MoE expert reads are not linear in ``b``, so those fall back to bisection.

    Memory time grows with ``b`` too (KV cache, activations): when each added sequence
    brings at least as much memory time as compute time, no balance exists.
    """
    compute = partial(compute_s, values, free=(S.b,))
    memory = partial(memory_s, values, free=(S.b,))
    c, m = _linear(compute, S.b), _linear(memory, S.b)
    if c is not None and m is not None:
        (c0, c1), (m0, m1) = c, m
        if c1 <= m1:
            ratio = "infinitely" if c1 == 0 else f"{number(m1 / c1):.3g}x"
            return Balance(None, f"memory-bound at every batch: each added sequence brings {ratio} more memory time than compute time")
        if c0 >= m0:
            return Balance(None, "compute-bound at every batch, even the smallest")
        x = Dummy("b")  # the batch symbol is a positive integer; the balance need not be
        return Balance(solve((compute - memory).xreplace({S.b: x}), x)[0], "solved exactly (linear in the batch)")
    f = vectorised(compute - memory, {}, (S.b,))
    lo, hi = 1e-6, float(BATCH_LIMIT)
    if f(lo) >= 0:
        return Balance(None, "compute-bound at every batch, even the smallest")
    if f(hi) < 0:
        return Balance(None, f"memory-bound at every batch up to {BATCH_LIMIT}")
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return Balance(hi, "solved by bisection (MoE expert reads are not linear in the batch)")


def context_limit(compute_s: Expr, memory_s: Expr, values: dict, *, limit: int = 10**8) -> int | None:
    """The longest context ``t`` at which a balance batch still exists (None: at every
    context up to ``limit``; -1: not even at ``t = 0``). KV reads grow with ``t``
    per sequence; the balance disappears once a sequence's added memory time
    overtakes its added compute time."""
    fixed = {k: v for k, v in values.items() if k not in (S.b, S.t)}
    # the other symbols once, so each step of the search substitutes only t
    compute_s, memory_s = (partial(e, fixed, free=(S.b, S.t)) for e in (compute_s, memory_s))

    def exists(t: int) -> bool:
        return balance_batch(compute_s, memory_s, {S.t: Integer(t)}).exists

    if exists(limit):
        return None
    if not exists(0):
        return -1
    lo, hi = 0, limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if exists(mid) else (lo, mid)
    return lo
