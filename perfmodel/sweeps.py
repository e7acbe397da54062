"""Sweeps: one named quantity over a grid of batch × new tokens × context.

The quantity's expression (the same one ``formula`` prints and evaluates exactly)
is compiled once with ``lambdify`` and evaluated over broadcast numpy arrays, so a
million points cost about as much as a few dozen array operations. The result is a
long-format DataFrame: one row per grid point.

(The module is not called ``sweep``: a submodule of that name would shadow the
``perfmodel.sweep`` function once imported.)
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import numpy as np
import pandas as pd

from perfmodel import symbols as S
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import vectorised
from perfmodel.grid import parse_grid
from perfmodel.quantities import lookup
from perfmodel.scenario import Scenario

#: the most grid points one sweep may evaluate
MAX_POINTS = 10**7
#: quantities that count things; integral values below 2**53 are returned as exact ints
_COUNT_UNITS = ("parameters", "bytes", "FLOPs")

Grid = Sequence[int] | str | int | None


def sweep(sc: Scenario, metric: str, *, batch: Grid = None, seq: Grid = None, context: Grid = None,
          layout=None) -> pd.DataFrame:
    """``metric`` (a name from :mod:`perfmodel.quantities`, e.g. ``time_s``) for every
    combination of ``batch``, ``seq`` (new tokens) and ``context`` (cached tokens).

    Each grid is a list of counts, a grid string (``"1k..128k:x2"``, see
    :mod:`perfmodel.grid`) or None for the scenario's own value. Columns: ``model``,
    ``phase``, ``batch``, ``seq``, ``context``, ``metric``, ``unit``, ``value``.
    With a ``layout``: one GPU's value (:func:`perfmodel.per_gpu.grid_values`), the
    layout's columns, and ``memory_per_gpu_bytes``/``fits`` per GPU; time quantities are
    refused (their communication is timed by ``request``).
    """
    q = lookup(metric)
    if layout is not None and q.needs_gpu:
        raise PerfmodelError(f"sweep: {q.name} on a layout needs its communication timed; use `request` with the "
                             f"layout (memory, parameter and FLOP quantities sweep per GPU)")
    if q.needs_gpu:
        sc.require_accelerator()
    axes = {
        "batch": _axis(batch, sc.batch, "batch", 1),
        "seq": _axis(seq, sc.seq_tokens, "seq", 1),
        "context": _axis(context, sc.context_tokens, "context", 0),
    }
    points = prod(len(a) for a in axes.values())
    if points > MAX_POINTS:
        raise PerfmodelError(f"sweep: {points:,} grid points is more than the limit of {MAX_POINTS:,}")
    # the largest corner must be a valid scenario (positions, training without a cache)
    sc.but(**{name: int(a[-1]) for name, a in axes.items()})
    if layout is None:
        values = grid_values(q.build(sc), sc.values, axes)
    else:
        from perfmodel.per_gpu import grid_values as per_gpu

        values = per_gpu(sc, layout, q.build, axes)
    if q.unit in _COUNT_UNITS and np.all(np.abs(values) < 2**53) and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    columns = np.meshgrid(*axes.values(), indexing="ij")
    frame = pd.DataFrame({name: col.ravel() for name, col in zip(axes, columns)})
    frame.insert(0, "model", sc.arch.name)
    frame.insert(1, "phase", sc.phase)
    frame["metric"] = q.name
    frame["unit"] = q.unit
    frame["value"] = values.ravel()
    if layout is not None:
        from perfmodel.fits import needed_bytes_expr
        from perfmodel.per_gpu import layout_labels, grid_values as per_gpu

        for i, (k, v) in enumerate(layout_labels(layout).items()):
            frame.insert(2 + i, k, v)
        need = per_gpu(sc, layout, needed_bytes_expr, axes).ravel()
        frame["memory_per_gpu_bytes"] = need
        if sc.accelerator is not None:
            frame["capacity_per_gpu_bytes"] = sc.accelerator.memory_bytes
            frame["fits"] = need <= sc.accelerator.memory_bytes
        return frame
    if sc.accelerator is not None:
        _add_fits(sc, axes, frame)
    return frame


def _add_fits(sc: Scenario, axes: dict, frame: pd.DataFrame) -> None:
    """Per point: the memory the step needs and whether it fits (a warning if some don't)."""
    from perfmodel.errors import warn
    from perfmodel.fits import grid_fits

    need, ok = grid_fits(sc, axes)
    frame["memory_needed_bytes"] = need.ravel().astype(np.int64) if np.all(need < 2**53) else need.ravel()
    frame["capacity_bytes"] = sc.accelerator.memory_bytes
    frame["fits"] = ok.ravel()
    if not ok.all():
        warn(f"{int((~ok).sum()):,} of {ok.size:,} grid points do not fit {sc.accelerator.name}'s "
             f"{sc.accelerator.memory_bytes / 2**30:.4g} GiB (fits = false; charts mark them)")


def grid_values(expr, fixed: dict, axes: dict[str, np.ndarray]) -> np.ndarray:
    """``expr`` with ``fixed`` bound, evaluated on the outer product of the ``batch``,
    ``seq`` and ``context`` axes: an array of shape (len(batch), len(seq), len(context))."""
    free = (S.b, S.s, S.t)
    f = vectorised(expr, fixed, free)
    grids = np.meshgrid(*(a.astype(np.float64) for a in axes.values()), indexing="ij", sparse=True)
    shape = tuple(len(a) for a in axes.values())
    return np.broadcast_to(np.asarray(f(*grids), dtype=np.float64), shape)


def _axis(grid: Grid, default: int, what: str, minimum: int) -> np.ndarray:
    if grid is None:
        values = [default]
    elif isinstance(grid, str):
        values = parse_grid(grid, what, minimum)
    else:
        values = parse_grid(",".join(str(v) for v in np.atleast_1d(grid)), what, minimum)
    return np.asarray(values, dtype=np.int64)


def swept_axis(frame: pd.DataFrame) -> str:
    """The token axis a chart should put on x: ``context`` if it varies, else ``seq``."""
    return "seq" if frame["context"].nunique() == 1 and frame["seq"].nunique() > 1 else "context"
