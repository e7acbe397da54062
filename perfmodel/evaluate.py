"""Numbers only by evaluating the expressions: exact substitution, or a cached
``lambdify`` for vectorised sweeps over numpy arrays.

Exact results stay sympy Integers/Rationals until export, where integers become
Python ints (exact at 10¹² and beyond) and non-integers floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from sympy import Expr, Integer, Rational, Symbol, lambdify, sympify

from perfmodel import symbols as S
from perfmodel.architecture import Architecture
from perfmodel.errors import PerfmodelError
from perfmodel.units import dtype_bytes, embedding_dtype, weight_element_bytes


def bindings(
    arch: Architecture | None = None,
    *,
    weight_dtype: str = "bf16",
    act_dtype: str = "bf16",
    kv_dtype: str = "bf16",
    embed_dtype: str | None = None,
    weight_group_size: int | None = None,
    **step: int,
) -> dict[Symbol, Expr]:
    """Symbol -> value for a model, its dtypes and a step (``b=8, s=1, t=4096``).
    ``embed_dtype`` None: :func:`~perfmodel.units.embedding_dtype`; ``weight_group_size``:
    per-group scales of int4/int8 weights (:func:`~perfmodel.units.weight_element_bytes`)."""
    values: dict[Symbol, Expr] = {} if arch is None else {k: Integer(v) for k, v in arch.symbol_values.items()}
    values[S.B_w] = Rational(weight_element_bytes(weight_dtype, weight_group_size))
    values[S.B_e] = Rational(dtype_bytes(embed_dtype or embedding_dtype(weight_dtype, act_dtype)))
    values[S.B_a] = Rational(dtype_bytes(act_dtype))
    values[S.B_kv] = Rational(dtype_bytes(kv_dtype))
    for name, value in step.items():
        if value is None:
            continue
        symbol = getattr(S, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PerfmodelError(f"{name}: must be an integer, got {value!r}")
        if value < (0 if symbol.is_nonnegative and not symbol.is_positive else 1):
            raise PerfmodelError(f"{name}: {value} is out of range")
        values[symbol] = Integer(value)
    return values


def partial(expr, values: Mapping[Symbol, Expr], free: Sequence[Symbol] = ()) -> Expr:
    """``expr`` with ``values`` substituted, leaving only the ``free`` symbols; an error
    names any other symbol left unbound."""
    result = sympify(expr).xreplace({k: v for k, v in values.items() if k not in free})
    unbound = result.free_symbols - set(free)
    if unbound:
        raise PerfmodelError(f"cannot evaluate: no value for {', '.join(sorted(map(str, unbound)))}")
    return result


def exact(expr, values: Mapping[Symbol, Expr]) -> Expr:
    """``expr`` with ``values`` substituted; an error names any symbol left unbound."""
    return partial(expr, values)


def number(value: Expr) -> int | float:
    """A sympy number as a Python int when it is an integer, else a float."""
    value = sympify(value)
    if value.is_Integer:
        return int(value)
    if value.is_number:
        return float(value)
    raise PerfmodelError(f"not a number: {value}")


def value(expr, values: Mapping[Symbol, Expr]) -> int | float:
    """Exact evaluation straight to a Python number."""
    return number(exact(expr, values))


@lru_cache(maxsize=512)
def _compiled(expr: Expr, args: tuple[Symbol, ...]):
    return lambdify(args, expr, modules="numpy")


def vectorised(expr, fixed: Mapping[Symbol, Expr], free: Sequence[Symbol]):
    """A numpy function of ``free`` symbols with ``fixed`` substituted; cached per expression."""
    return _compiled(partial(expr, fixed, free), tuple(free))
