"""Does a scenario fit its accelerator? The memory a step needs (the ``total_bytes`` of
:func:`perfmodel.memory.memory`, the same expression ``memory`` reports) against the
accelerator's capacity, for one scenario, a sweep grid, or as the largest batch.

Every command that reports a time carries these columns, so a time is never shown
for a configuration that could not run without saying so.
"""

from __future__ import annotations

import warnings

from sympy import Expr

from perfmodel import symbols as S
from perfmodel.errors import PerfmodelWarning
from perfmodel.evaluate import value
from perfmodel.memory import memory
from perfmodel.scenario import Scenario
from perfmodel.units import GIB


class FitWarning(PerfmodelWarning):
    """A time reported for a configuration whose memory exceeds the accelerator's."""


def needed_bytes_expr(sc: Scenario) -> Expr:
    """The memory the scenario's step needs, as an expression in b, s, t."""
    return memory(sc.table)["total_bytes"]


def fit_columns(sc: Scenario) -> dict:
    """``memory_needed_bytes``, ``capacity_bytes`` and ``fits`` for the scenario (empty
    without an accelerator)."""
    acc = sc.accelerator
    if acc is None:
        return {}
    need = value(needed_bytes_expr(sc), sc.values)
    return {"memory_needed_bytes": need, "capacity_bytes": acc.memory_bytes, "fits": bool(need <= acc.memory_bytes)}


def warn_unless_fits(sc: Scenario, columns: dict | None = None) -> dict:
    """:func:`fit_columns`, warning (:class:`FitWarning`) when the step does not fit."""
    columns = fit_columns(sc) if columns is None else columns
    if columns and not columns["fits"]:
        warnings.warn(not_fitting(sc, columns["memory_needed_bytes"]), FitWarning, stacklevel=2)
    return columns


def not_fitting(sc: Scenario, need: int) -> str:
    acc = sc.accelerator
    return (
        f"{sc.arch.name} at batch {sc.batch}, {sc.tokens_seen:,} tokens per sequence needs "
        f"{need / GIB:.4g} GiB but {acc.name} has {acc.memory_bytes / GIB:.4g} GiB: it does not fit "
        "(times are what it would take if it did)"
    )


def grid_fits(sc: Scenario, axes: dict) -> tuple:
    """(needed bytes, fits) over a sweep grid (arrays shaped like the grid)."""
    from perfmodel.sweeps import grid_values

    need = grid_values(needed_bytes_expr(sc), sc.values, axes)
    return need, need <= sc.accelerator.memory_bytes


def largest_batch(sc: Scenario) -> int | None:
    """The largest batch that fits at the scenario's tokens (0: not even one sequence;
    None: any batch up to 10**9)."""
    from perfmodel.api import _largest

    acc = sc.require_accelerator()
    return _largest(needed_bytes_expr(sc), sc.values, S.b, acc.memory_bytes)
