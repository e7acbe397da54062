"""Grids of counts for sweeps, as the command line writes them (CLI.md):

- ``1,8,64``: a list;
- ``a..b``: every integer from a to b;
- ``a..b:N``: from a up to b in steps of N;
- ``a..b:xN``: geometric, each value N times the last (``1k..128k:x2`` = 1k, 2k, …, 128k).

Every number takes a ``k``/``m`` suffix (1k = 1024). Items of a list may be ranges
(``1,2,4..64:x2``); the grid is returned sorted without repeats.
"""

from __future__ import annotations

import math
from fractions import Fraction

from perfmodel.errors import PerfmodelError
from perfmodel.units import parse_count

#: the most values one axis may hold (the whole sweep is capped separately)
MAX_POINTS = 10**7
#: the most steps a geometric range may take (a factor near 1 would take millions)
MAX_GEOMETRIC = 10_000


def parse_grid(text: str, what: str = "grid", minimum: int = 1) -> list[int]:
    """The sorted distinct counts ``text`` names; a one-line error for an empty grid,
    a reversed range, a zero or non-growing step, or more than :data:`MAX_POINTS` values."""
    text = str(text).strip()
    if not text:
        raise PerfmodelError(f"{what}: empty grid (use e.g. 1,8,64 or 1k..128k:x2)")
    values: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise PerfmodelError(f"{what}: empty item in {text!r}")
        values.update(_item(item, what, minimum))
        if len(values) > MAX_POINTS:
            raise PerfmodelError(f"{what}: more than {MAX_POINTS:,} values")
    return sorted(values)


def _item(item: str, what: str, minimum: int) -> list[int]:
    if ".." not in item:
        return [parse_count(item, what, minimum)]
    start_text, _, rest = item.partition("..")
    stop_text, colon, step_text = rest.partition(":")
    blank = not start_text.strip() or not stop_text.strip() or (colon and not step_text.strip())
    if blank or ".." in rest or ":" in step_text:
        raise PerfmodelError(f"{what}: {item!r} is not a range (a..b, a..b:N or a..b:xN)")
    start = parse_count(start_text.strip(), what, minimum)
    stop = parse_count(stop_text.strip(), what, minimum)
    if stop < start:
        raise PerfmodelError(f"{what}: {item!r} is a reversed range ({start} > {stop})")
    step_text = step_text.strip()
    if step_text[:1] in ("x", "X"):
        return _geometric(item, start, stop, step_text[1:], what)
    step = parse_count(step_text, f"{what} step", 0) if colon else 1
    if step == 0:
        raise PerfmodelError(f"{what}: {item!r} has a zero step")
    if (stop - start) // step + 1 > MAX_POINTS:
        raise PerfmodelError(f"{what}: {item!r} has more than {MAX_POINTS:,} values")
    return list(range(start, stop + 1, step))


def _geometric(item: str, start: int, stop: int, factor_text: str, what: str) -> list[int]:
    """``start, start·r, start·r², …`` up to ``stop``, each rounded to the nearest integer."""
    try:
        factor = Fraction(factor_text)
    except (ValueError, ZeroDivisionError):
        raise PerfmodelError(f"{what}: {item!r}: the factor {factor_text!r} is not a number") from None
    if factor <= 1:
        raise PerfmodelError(f"{what}: {item!r}: a geometric factor must be above 1")
    if start == 0:
        raise PerfmodelError(f"{what}: {item!r}: a geometric range cannot start at 0")
    if len(factor_text) > 40:
        raise PerfmodelError(f"{what}: {item!r}: the factor is too long a number")
    growth = math.log1p(float(min(factor, 2 * stop + 2) - 1))  # exact for factors a hair above 1
    steps = math.floor(math.log(stop / start) / growth) + 1 if growth > 0 else math.inf
    if steps > MAX_GEOMETRIC:
        raise PerfmodelError(
            f"{what}: {item!r}: the factor {factor_text} is too close to 1 (more than {MAX_GEOMETRIC:,} steps); use a larger one"
        )
    out, x = [], Fraction(start)
    while x <= stop:
        out.append(round(x))
        x = (x * factor).limit_denominator(2**32) if x.denominator > 2**32 else x * factor
    return out
