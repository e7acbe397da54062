"""Many points of one quantity, fast: the quantity's expression (the one ``formula``
prints) is compiled once per model structure — architecture, options, dtypes and
accelerator — with ``lambdify`` over the step symbols ``b, s, t``; each later point is
one call of plain Python arithmetic.

    >>> point(sc, "time_s", batch=8, context=4096)     # compiles on the first call
    >>> point(sc, "time_s", batch=16, context=8192)    # microseconds

Counts (parameters, bytes, FLOPs) come back as exact ints where the float is integral
and below 2**53, as :mod:`perfmodel.sweeps` does; above that use ``formula`` for the
exact value.
"""

from __future__ import annotations

from collections.abc import Callable

from sympy import lambdify

from perfmodel import symbols as S
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import partial
from perfmodel.quantities import lookup
from perfmodel.scenario import Scenario

_STEP = (S.b, S.s, S.t)
_COUNT_UNITS = ("parameters", "bytes", "FLOPs")
_CACHE: dict[tuple, tuple[Callable, bool]] = {}


def _structure(sc: Scenario, name: str) -> tuple:
    """What the compiled function depends on: everything but batch, seq and context.
    The accelerator is keyed by identity (its peak mapping is not hashable)."""
    return (name, sc.arch, sc.options, sc.weight_dtype, sc.act_dtype, sc.kv_dtype, id(sc.accelerator), sc.efficiency)


def compiled(sc: Scenario, name: str) -> Callable[[int, int, int], float]:
    """The quantity ``name`` of ``sc`` as a function of (batch, seq, context)."""
    key = _structure(sc, name)
    if key not in _CACHE:
        q = lookup(name)
        if q.needs_gpu:
            sc.require_accelerator()
        fixed = {k: v for k, v in sc.values.items() if k not in _STEP}
        _CACHE[key] = (lambdify(_STEP, partial(q.build(sc), fixed, _STEP), modules="math"), q.unit in _COUNT_UNITS)
        _CACHE[key + ("accelerator",)] = sc.accelerator  # keep it alive: its id stays unique
    return _CACHE[key][0]


def point(sc: Scenario, name: str, *, batch: int | None = None, seq: int | None = None, context: int | None = None):
    """``name`` at one step of ``sc``'s model (``sc``'s own batch, seq, context where
    not given). Learned-position limits are checked as :class:`Scenario` checks them."""
    b = sc.batch if batch is None else batch
    s = sc.seq_tokens if seq is None else seq
    t = sc.context_tokens if context is None else context
    for label, v, low in (("batch", b, 1), ("seq", s, 1), ("context", t, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise PerfmodelError(f"{label}: {v!r} is not a valid count")
    limit = sc.arch.max_position_embeddings
    if limit is not None and s + t > limit:
        raise PerfmodelError(f"context + seq = {s + t} exceeds max_position_embeddings={limit}")
    fn = compiled(sc, name)
    out = fn(b, s, t)
    if _CACHE[_structure(sc, name)][1] and float(out).is_integer() and abs(out) < 2**53:
        return int(out)
    return float(out)
