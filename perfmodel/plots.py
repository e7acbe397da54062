"""Charts: a scenario's operators on its accelerator's roofline, the decode balance
curve, and two generic DataFrame plotters (bars, sweeps) for ``compare`` and ``sweep``.

Each function writes ``path`` (PNG, SVG or PDF, chosen by the extension) and returns
the matplotlib ``Figure`` so callers and tests can inspect it. matplotlib is imported
inside the functions (``import perfmodel`` stays light) and drawn with the Agg
canvas on a bare ``Figure``: no pyplot, no global backend switch, no open figures.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import number
from perfmodel.units import si

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
TERA = 1e12
MEMORY_COLOR, COMPUTE_COLOR = "tab:blue", "tab:red"


# ---------------------------------------------------------------- plumbing


def _format(path) -> str:
    """The file format from ``path``'s extension; an error for any other."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise PerfmodelError(f"plot {str(path)!r}: name must end in {', '.join(FORMATS)}")
    return fmt


def _figure(width: float, height: float, margins: dict | None = None):
    """A Figure on its own Agg canvas (what ``matplotlib.use('Agg')`` gives, minus the
    global switch); fixed ``margins`` (figure fractions) skip the slower constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=None if margins else "constrained")
    if margins:
        fig.subplots_adjust(**margins)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, fmt: str):
    """Write the chart atomically: a failed write leaves no half-made file behind."""
    from perfmodel.files import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150))
    return fig


def _dtypes(sc) -> str:
    return f"weights {sc.weight_dtype}, activations {sc.act_dtype}, KV cache {sc.kv_dtype}"


def _columns(frame, *names) -> None:
    missing = [n for n in names if n is not None and n not in frame.columns]
    if missing:
        raise PerfmodelError(f"plot: no column {', '.join(map(repr, missing))} (columns: {', '.join(map(str, frame.columns))})")


# ---------------------------------------------------------------- roofline chart


def _short(names: list[str]) -> str:
    """Operator names grouped by block, one line each: ``ffn: gate_proj up_proj``."""
    blocks: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):  # an op in several layer groups is named once
        block, dot, rest = name.partition(".")
        blocks.setdefault(block if dot else "", []).append(rest if dot else block)
    return "\n".join(f"{block}: {' '.join(parts)}" if block else " ".join(parts) for block, parts in blocks.items())


def _clusters(points, tolerance: float = 0.05) -> list[list]:
    """Points whose log10 coordinates lie within ``tolerance`` of a cluster's first one
    share one label (decode matmuls all sit at intensity ≈ batch)."""
    clusters: list[list] = []
    for p in sorted(points, key=lambda p: -p["share"]):
        for c in clusters:
            if abs(math.log10(p["x"] / c[0]["x"])) < tolerance and abs(math.log10(p["y"] / c[0]["y"])) < tolerance:
                c.append(p)
                break
        else:
            clusters.append([p])
    return clusters


def _share(fraction: float) -> str:
    return "<0.1%" if fraction < 0.001 else f"{fraction:.1%}"


#: label offsets tried in turn (points from the marker), nearest first
_OFFSETS = [(dx, dy) for r in (14, 32, 56, 84) for dx, dy in ((r, r), (r, -r), (-r, r), (-r, -r), (0, 1.4 * r), (0, -1.4 * r))]


def _place_labels(fig, ax, items, obstacles) -> None:
    """Annotate each ``(x, y, text)`` at the first offset whose box stays inside the
    axes and clear of the boxes already placed and of ``obstacles`` (display coords);
    where none is clear, at the offset overlapping least."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = list(obstacles)

    def area(box) -> float:
        return 0.0 if box is None else box.width * box.height

    def overlap(box) -> float:
        """Area outside the axes (weighted ×10) plus area over earlier boxes."""
        outside = area(box) - area(Bbox.intersection(box, frame))
        return 10 * outside + sum(area(Bbox.intersection(box, other)) for other in placed)

    for x, y, text in items:
        best = None
        for dx, dy in _OFFSETS:
            note = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom" if dy > 0 else "top",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.6", "alpha": 0.9},
                arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.6},
            )
            note.update_positions(renderer)
            box = Text.get_window_extent(note, renderer).expanded(1.06, 1.15)  # the label, not its leader line
            score = overlap(box)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, note, box)
            else:
                note.remove()
            if score == 0:
                break
        placed.append(best[2])


def roofline_chart(sc, path, frame=None, *, labels: int = 8):
    """Attainable FLOP/s against arithmetic intensity (log-log) on ``sc``'s accelerator:
    the roof for the activation dtype (and, dashed, the expected roof with the
    efficiencies), the ridge point, and each forward operator over all its layers at
    (FLOP/byte, FLOP / roofline time). ``frame``: ``api.roofline_report(sc)`` if already made;
    the ``labels`` largest clusters of operators by time share are named."""
    import numpy as np
    from matplotlib.transforms import Bbox

    from perfmodel.api import roofline_report

    fmt = _format(path)
    acc = sc.require_accelerator()
    frame = roofline_report(sc, by="operator") if frame is None else frame
    ops = frame[frame["pass"] == "fwd"]
    pure = sc.roof()
    peak, bandwidth, ridge = number(pure.peak), number(pure.bandwidth), number(pure.ridge_point)
    drawable = (ops["flops"] > 0) & (ops["bytes"] > 0) & (ops["time_s"] > 0)
    shown, hidden = ops[drawable], ops[~drawable]
    total = shown["time_s"].sum()
    points = [
        {"name": r.operator, "x": r.flops / r.bytes, "y": r.flops / r.time_s / TERA, "share": r.time_s / total, "bound": r.bound}
        for r in shown.itertuples()
    ]

    xs = [p["x"] for p in points] or [ridge]
    x_lo = 10 ** math.floor(math.log10(min(min(xs), ridge) / 3))
    x_hi = 10 ** math.ceil(math.log10(max(max(xs) * 3, ridge * 10)))
    grid = np.geomspace(x_lo, x_hi, 400)
    roof = np.minimum(peak, bandwidth * grid) / TERA

    fig = _figure(9, 6, {"left": 0.08, "right": 0.98, "bottom": 0.08, "top": 0.91})
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvspan(x_lo, ridge, color=MEMORY_COLOR, alpha=0.06, lw=0)
    ax.axvspan(ridge, x_hi, color=COMPUTE_COLOR, alpha=0.06, lw=0)
    ax.plot(grid, roof, color="black", lw=2,
            label=f"roofline: {si(peak, 'FLOP/s', 4)} {sc.act_dtype}, {si(bandwidth, 'B/s', 4)}")
    if sc.efficiency is not None:
        e = sc.efficiency
        ax.plot(grid, np.minimum(peak * e.compute, bandwidth * e.bandwidth * grid) / TERA, color="black", lw=1.2, ls="--",
                label=f"expected: {e.compute:.0%} of peak, {e.bandwidth:.0%} of bandwidth")
    if pure.vector_peak is not None:
        vector = number(pure.vector_peak)
        ax.plot(grid, np.minimum(vector, bandwidth * grid) / TERA, color="0.45", lw=1, ls=":",
                label=f"vector (non-tensor) peak: {si(vector, 'FLOP/s', 3)}")
    ax.plot([ridge], [peak / TERA], "D", color="black", ms=7, label=f"ridge point: {ridge:.4g} FLOP/byte")
    ax.axvline(ridge, color="black", lw=0.6, ls=":")
    for bound, color in (("memory", MEMORY_COLOR), ("compute", COMPUTE_COLOR)):
        group = [p for p in points if p["bound"] == bound]
        if group:
            ax.scatter([p["x"] for p in group], [p["y"] for p in group], s=[25 + 500 * p["share"] for p in group],
                       color=color, alpha=0.75, edgecolor="black", lw=0.5, zorder=3,
                       label=f"{bound}-bound operator (area ∝ share of time)")

    y_lo = min([p["y"] for p in points] + [bandwidth * x_lo / TERA]) / 3
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, peak / TERA * 4)
    band = ax.get_xaxis_transform()
    ax.text(ridge / 1.15, 0.02, "memory-bound", transform=band, ha="right", va="bottom", color=MEMORY_COLOR, fontsize=9)
    ax.text(ridge * 1.15, 0.02, "compute-bound", transform=band, ha="left", va="bottom", color=COMPUTE_COLOR, fontsize=9)
    ax.set_xlabel("Arithmetic intensity (FLOP/byte)")
    ax.set_ylabel(f"Attainable performance (TFLOP/s, {sc.act_dtype})")
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    what = "forward operators, " if sc.phase == "train" else ""
    from perfmodel.fits import fit_columns

    fit = fit_columns(sc)
    misfit = "" if fit["fits"] else f" — does not fit: needs {fit['memory_needed_bytes'] / 2**30:.4g} of {acc.memory_bytes / 2**30:.4g} GiB"
    ax.set_title(
        f"{sc.arch.name} on {acc.name}: {sc.phase}, batch {sc.batch}, seq {sc.seq_tokens}, context {sc.context_tokens}{misfit}\n"
        f"{what}{_dtypes(sc)}; each operator summed over its layers",
        fontsize=10, color="black" if fit["fits"] else "darkred",
    )
    ax.legend(loc="upper left", fontsize=7.5, framealpha=0.9)
    if len(hidden):
        note = "not drawn (no FLOPs or no bytes): " + ", ".join(dict.fromkeys(hidden["operator"]))
        ax.text(0.99, 0.08, textwrap.fill(note, 60), transform=ax.transAxes, ha="right", va="bottom", fontsize=6.5, color="0.35")

    renderer = fig.canvas.get_renderer()
    obstacles = [ax.get_legend().get_window_extent(renderer)] + [t.get_window_extent(renderer) for t in ax.texts]
    for line in ax.lines:  # the roofs stay visible
        if len(line.get_xdata()) > 2:
            trace = line.get_transform().transform(line.get_xydata())
            obstacles += [Bbox.from_bounds(x - 2, y - 2, 4, 4) for x, y in trace[::4]]
    for markers in ax.collections:  # every operator's marker stays visible
        centres = markers.get_offset_transform().transform(markers.get_offsets())
        radii = np.sqrt(markers.get_sizes()) / 2 * fig.dpi / 72
        obstacles += [Bbox.from_bounds(x - r, y - r, 2 * r, 2 * r) for (x, y), r in zip(centres, radii)]
    items = [
        (c[0]["x"], c[0]["y"], f"{_short([p['name'] for p in c])}\n{_share(sum(p['share'] for p in c))} of time")
        for c in _clusters(points)[:labels]
    ]
    _place_labels(fig, ax, items, obstacles)
    return _save(fig, path, fmt)


# ---------------------------------------------------------------- balance chart


def balance_chart(sc, path, *, points: int = 400):
    """A decode step's compute time and memory time against the batch (log-log), from
    1 to 4× the balance batch (1024 without one), the crossing marked. Both curves
    are the roofline's own expressions, evaluated with ``vectorised``."""
    import numpy as np

    from perfmodel import symbols as S
    from perfmodel.evaluate import vectorised
    from perfmodel.roofline import balance_batch, step_terms

    fmt = _format(path)
    acc = sc.require_accelerator()
    compute, memory = step_terms(sc.op_times())
    fixed = {k: v for k, v in sc.values.items() if k != S.b}
    result = balance_batch(compute, memory, fixed)
    star = None if result.batch is None else number(result.batch)
    batches = np.geomspace(1, max(16.0, 4 * star) if star else 1024, points)
    curves = {
        "compute": np.broadcast_to(vectorised(compute, fixed, (S.b,))(batches), batches.shape) * 1e3,
        "memory": np.broadcast_to(vectorised(memory, fixed, (S.b,))(batches), batches.shape) * 1e3,
    }

    fig = _figure(8, 5.5)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.plot(batches, curves["compute"], color=COMPUTE_COLOR, lw=2,
            label=f"compute time: Σ FLOPs / peak ({si(acc.peak(sc.act_dtype), 'FLOP/s', 4)} {sc.act_dtype})")
    ax.plot(batches, curves["memory"], color=MEMORY_COLOR, lw=2,
            label=f"memory time: Σ bytes / bandwidth ({si(acc.memory_bandwidth_bytes_per_s, 'B/s', 4)})")
    if star is not None:
        at = float(vectorised(compute, fixed, (S.b,))(star)) * 1e3
        ax.axvspan(1, star, color=MEMORY_COLOR, alpha=0.06, lw=0)
        ax.axvspan(star, batches[-1], color=COMPUTE_COLOR, alpha=0.06, lw=0)
        ax.plot([star], [at], "o", color="black", ms=8, zorder=3, label=f"balance: batch {star:.4g}")
        ax.annotate(f"balance batch ≈ {star:.4g}\n({at:.3g} ms per step)", (star, at), xytext=(-20, 40),
                    textcoords="offset points", ha="right", fontsize=9,
                    arrowprops={"arrowstyle": "->", "color": "black"},
                    bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.6"})
        band = ax.get_xaxis_transform()
        ax.text(star / 1.2, 0.02, "memory-bound", transform=band, ha="right", color=MEMORY_COLOR, fontsize=9)
        ax.text(star * 1.2, 0.02, "compute-bound", transform=band, ha="left", color=COMPUTE_COLOR, fontsize=9)
    else:
        # lower right: below the compute line, which stays under the memory line throughout
        ax.text(0.98, 0.04, textwrap.fill(f"No balance point at context {sc.context_tokens}: {result.reason}", 45),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=10,
                bbox={"boxstyle": "round,pad=0.5", "fc": "lightyellow", "ec": "0.5"})
    from perfmodel.fits import largest_batch

    most = largest_batch(sc)
    if most is not None and most < batches[-1]:
        ax.axvspan(max(most, 1), batches[-1], facecolor="0.6", alpha=0.35, hatch="//", edgecolor="0.4", lw=0,
                   label=f"does not fit in {acc.memory_bytes / 2**30:.4g} GiB (batch > {most})")
        ax.axvline(max(most, 1), color="0.3", ls="--", lw=1)
    ax.set_xlim(1, batches[-1])
    ax.set_xlabel("Batch (sequences decoded together)")
    ax.set_ylabel("Time per decode step (ms)")
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    ax.set_title(
        f"{sc.arch.name} decode on {acc.name}: context {sc.context_tokens}, seq {sc.seq_tokens}\n{_dtypes(sc)}",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    return _save(fig, path, fmt)


# ---------------------------------------------------------------- generic frames


def _log_span(values, ratio: float) -> bool:
    """True if every value is a positive number and they span at least ``ratio``."""
    import pandas as pd

    numbers = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
    return bool(len(numbers)) and numbers.notna().all() and numbers.min() > 0 and numbers.max() / numbers.min() >= ratio


def bar_chart(frame, column: str, path, label_column: str = "model", title: str | None = None):
    """One bar per row of ``frame``: ``column`` against ``label_column``, each bar
    labelled with its value; log scale when the values span more than 1000×."""
    import pandas as pd

    fmt = _format(path)
    _columns(frame, column, label_column)
    if frame.empty:
        raise PerfmodelError("plot: the frame has no rows")
    values = pd.to_numeric(frame[column], errors="coerce")
    labels = [str(v) for v in frame[label_column]]
    fig = _figure(max(5.0, 0.9 * len(labels) + 2), 4.5)
    ax = fig.add_subplot()
    heights = values.fillna(0).to_numpy()
    bars = ax.bar(range(len(labels)), heights, color="tab:blue", alpha=0.8)
    if "fits" in frame:  # a model that does not fit: grey, hatched, said in the legend
        misfits = [bar for bar, ok in zip(bars, frame["fits"].astype(bool)) if not ok]
        for bar in misfits:
            bar.set(facecolor="0.7", hatch="//", edgecolor="0.4")
        if misfits:
            ax.legend([misfits[0]], ["does not fit in memory"], fontsize=8, loc="upper right")
    if _log_span(values.dropna(), 1000):
        ax.set_yscale("log")
    else:
        _engineering(ax)
    ax.bar_label(bars, labels=["n/a" if math.isnan(v) else si(v, digits=4) for v in values], fontsize=8, padding=2)
    crowded = sum(map(len, labels)) > 60
    ax.set_xticks(range(len(labels)), labels, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_xlabel(label_column)
    ax.set_ylabel(axis_label(column))
    heading = f"{axis_label(column)} by {label_column}"
    width = fig.get_size_inches()[0]
    ax.set_title(heading if title is None else f"{textwrap.fill(title, int(width * 11))}\n{heading}", fontsize=10)
    ax.grid(True, axis="y", lw=0.4, alpha=0.5)
    return _save(fig, path, fmt)


def _engineering(ax) -> None:
    """Linear y ticks with SI prefixes (``20 G``), never a bare ``1e10`` offset."""
    from matplotlib.ticker import EngFormatter

    ax.yaxis.set_major_formatter(EngFormatter(sep=" "))


_AXIS_NAMES = {"batch": "batch (sequences)", "context": "context (cached tokens per sequence)", "seq": "new tokens per sequence"}
_UNIT_SUFFIXES = (("_tokens_per_s", "tokens/s"), ("_per_s", "per s"), ("_bytes", "bytes"), ("_gib", "GiB"), ("_s", "s"), ("_flops", "FLOPs"))


def axis_label(column: str) -> str:
    """A readable axis label with its unit: ``time_s`` -> ``time (s)``."""
    if column in _AXIS_NAMES:
        return _AXIS_NAMES[column]
    for suffix, unit in _UNIT_SUFFIXES:
        if column.endswith(suffix) and column != suffix.lstrip("_"):
            return f"{column[: -len(suffix)].replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


def sweep_chart(frame, metric: str, path, kind: str = "lines", x: str = "context", series: str | None = "batch", title: str | None = None):
    """A long-format sweep (one row per grid point): ``metric`` against ``x``, one line
    per value of ``series`` (``kind="lines"``), or a ``series`` × ``x`` heatmap
    (``kind="heatmap"``). Log axes where the values span more than a few doublings."""
    import numpy as np
    import pandas as pd
    from matplotlib.ticker import NullLocator

    fmt = _format(path)
    if kind not in ("lines", "heatmap"):
        raise PerfmodelError(f"plot: kind {kind!r} is not one of lines, heatmap")
    if kind == "heatmap" and series is None:
        raise PerfmodelError("plot: a heatmap needs a series column")
    _columns(frame, metric, x, series)
    keys = [c for c in (series, x) if c is not None]
    if frame.empty:
        raise PerfmodelError("plot: the frame has no rows")
    if frame.duplicated(keys).any():
        raise PerfmodelError(f"plot: several rows share one ({', '.join(keys)}) point; filter the frame first")
    data = frame.assign(**{metric: pd.to_numeric(frame[metric], errors="coerce")})
    fig = _figure(8, 5.5)
    ax = fig.add_subplot()
    if kind == "lines":
        groups = data.groupby(series, sort=True) if series is not None else [(None, data)]
        for name, group in groups:
            group = group.sort_values(x)
            ax.plot(group[x], group[metric], marker="o", ms=4, label=None if series is None else f"{series} = {name}")
        if _log_span(data[x], 8):
            powers_of_two = all(float(v).is_integer() and int(v) & (int(v) - 1) == 0 for v in data[x])
            ax.set_xscale("log", base=2 if powers_of_two else 10)
            ticks = sorted(set(data[x]))
            if len(ticks) <= 12:  # tick each grid value, written plainly (4096, not 2¹²)
                ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
                ax.xaxis.set_minor_locator(NullLocator())
        if "fits" in data and not data["fits"].astype(bool).all():
            out = data[~data["fits"].astype(bool)]
            ax.plot(out[x], out[metric], "x", color="0.45", ms=9, mew=2, zorder=4, label="does not fit in memory")
        if _log_span(data[metric].dropna(), 100):
            ax.set_yscale("log")
        else:
            _engineering(ax)
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(axis_label(metric))
        if series is not None:
            ax.legend(fontsize=8)
        ax.grid(True, which="major", lw=0.4, alpha=0.5)
    else:
        from matplotlib.colors import LogNorm

        table = data.pivot(index=series, columns=x, values=metric).sort_index().sort_index(axis=1)
        cells = table.to_numpy(dtype=float)
        finite = cells[np.isfinite(cells)]
        norm = LogNorm() if _log_span(finite, 10) else None
        image = ax.imshow(cells, aspect="auto", origin="lower", cmap="viridis", norm=norm)
        fig.colorbar(image, ax=ax, label=axis_label(metric))
        if "fits" in data:  # grey out the cells that do not fit in memory
            from matplotlib.colors import ListedColormap

            fits = data.pivot(index=series, columns=x, values="fits").sort_index().sort_index(axis=1).to_numpy(dtype=bool)
            if not fits.all():
                ax.imshow(np.where(fits, np.nan, 1.0), aspect="auto", origin="lower", cmap=ListedColormap(["0.75"]))
                ax.text(0.99, 1.01, "grey: does not fit in memory", transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
                cells = np.where(fits, cells, np.nan)
        ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns], rotation=45 if len(table.columns) > 8 else 0)
        ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
        if cells.size <= 144:
            for (row, col), v in np.ndenumerate(cells):
                if np.isfinite(v):
                    r, g, b, _ = image.cmap(image.norm(v))
                    ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                    ax.text(col, row, si(v, digits=3), ha="center", va="center", fontsize=7, color=ink)
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(axis_label(series))
    heading = f"{axis_label(metric)} over {x}" + (f" and {series}" if series is not None else "")
    ax.set_title(heading if title is None else f"{title}\n{heading}", fontsize=10)
    return _save(fig, path, fmt)


def request_chart(steps, path, sc):
    """A request's latency step by step (``request --by step``): each decode step's
    calibrated seconds and its pure-roofline bound over the output, and the time elapsed."""
    fmt = _format(path)
    _columns(steps, "step", "time_s", "roofline_time_s", "elapsed_s")
    decode = steps[steps["step"] > 0]
    fig = _figure(9, 4.5)
    ax, total = fig.subplots(1, 2)
    ax.plot(decode["step"], decode["time_s"] * 1e3, label="calibrated", color=COMPUTE_COLOR)
    ax.plot(decode["step"], decode["roofline_time_s"] * 1e3, label="pure roofline (bound)", color=MEMORY_COLOR, ls="--")
    ax.set(xlabel="output token", ylabel="decode step (ms)", title="time per output token")
    ax.legend()
    total.plot(steps["step"], steps["elapsed_s"], color=COMPUTE_COLOR)
    total.set(xlabel="output token", ylabel="elapsed since the request began (s)", title="end-to-end latency")
    fig.suptitle(f"{sc.arch.name} on {sc.accelerator.name}, batch {sc.batch}, prompt {int(steps['context'].iloc[1]) if len(steps) > 1 else '?'}; {_dtypes(sc)}", fontsize=9)
    return _save(fig, path, fmt)


def serving_chart(frame, path):
    """The latency–throughput curve of ``serve --curve``: TPOT and TTFT against output
    tokens/s per GPU, one point per concurrency (labelled), what binds at the largest."""
    fmt = _format(path)
    _columns(frame, "running", "output_tokens_per_s_per_gpu", "tpot_s", "ttft_s", "binds")
    fig = _figure(10, 4.5)
    axes = fig.subplots(1, 2)
    x = frame["output_tokens_per_s_per_gpu"]
    for ax, col, title, color in ((axes[0], "tpot_s", "time per output token", COMPUTE_COLOR),
                                  (axes[1], "ttft_s", "time to first token", MEMORY_COLOR)):
        ax.plot(x, frame[col] * 1e3, marker="o", color=color)
        for xi, yi, c in zip(x, frame[col] * 1e3, frame["running"]):
            ax.annotate(f"{c:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set(xlabel="output tokens/s per GPU", ylabel=f"{col.removesuffix('_s')} (ms)", title=title)
    last = frame.iloc[-1]
    fig.suptitle(f"{last['model']} on {last['gpu']}: prompt {last['prompt']:g}, output {last['output']:g}; "
                 f"points: concurrency; at {last['running']:g} {last['binds']} binds", fontsize=9)
    return _save(fig, path, fmt)
