"""Render a table (:class:`~perfmodel.rows.Rows`, or a pandas DataFrame read as Rows)
as a terminal table, CSV, JSON records, Markdown or LaTeX, without importing pandas.

Frames hold numbers; formatting happens only here. JSON keeps counts as exact
integers (pandas would turn a column with a missing value into floats). CSV and JSON
keep full precision; the table, Markdown and LaTeX group integers by thousands and
show other numbers to 4 significant digits; the terminal table adds an SI prefix
outside [0.001, 1000) (``14.79 m`` in a ``time_s`` column is 14.79 ms), Markdown and
LaTeX write plain numbers (``0.01479``, ``1.479e-05``). The unit is in the column name.

A frame may name columns that already hold LaTeX math in ``frame.attrs["latex_columns"]``
(a formula's expression): LaTeX output sets them as ``$…$`` instead of escaping them.
CSV is written as pandas' ``to_csv(index=False)`` writes it (the same csv module calls).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re

from perfmodel.rows import Rows, missing

FORMATS = ("table", "csv", "json", "markdown", "latex")


def _plain(value):
    """A JSON-ready Python value: exact ints, floats, None for NaN, lists kept."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if missing(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def records(frame) -> list[dict]:
    """Rows as dicts of plain Python values (ints stay ints)."""
    frame = Rows.of(frame)
    columns = frame.columns
    return [{c: _plain(v) for c, v in zip(columns, row)} for row in frame.tuples()]


_PREFIXES = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")]


def _cell(value) -> str:
    """A human-readable cell: grouped integers; floats to 4 significant digits, with an
    SI prefix outside [1e-3, 1000) (``2.589e11`` -> ``258.9 G``)."""
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, list):
        return "×".join(str(v) for v in value)
    return str(value)


def plain_cell(value, latex: bool = False) -> str:
    """A cell for Markdown and LaTeX: like the table's, but floats as plain numbers to 4
    significant digits (``4.2e-05``, in LaTeX ``4.2\\times10^{-5}``), never an SI letter."""
    value = _plain(value)
    if not isinstance(value, float) or isinstance(value, bool) or not math.isfinite(value):
        return _cell(value)
    text = f"{value:.4g}"
    if 1e3 <= abs(value) < 1e15:  # 11,720 rather than 1.172e+04
        return f"{float(text):,.0f}"
    mantissa, e, exponent = text.partition("e")
    if e and latex:
        return rf"${mantissa}\times10^{{{int(exponent)}}}$"
    return text


def _float(value: float) -> str:
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 999.95:
        return f"{value:.4g}"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * 0.99995:  # what rounds up to 1 takes this prefix
            return f"{value / scale:.4g} {prefix}"
    return f"{value:.4g}"


#: a table wider than this with at most TRANSPOSE_ROWS rows prints one column per row
WIDE = 160
TRANSPOSE_ROWS = 12


def _numeric(frame: Rows) -> list[bool]:
    """Which columns hold numbers (right-aligned); a column of ints and None counts."""
    return [_numeric_column(frame, c) for c in frame.columns]


def _numeric_column(frame: Rows, c) -> bool:
    kind = frame.kind(c)
    if kind != "object":
        return kind != "bool"
    present = (v for v in map(_plain, frame[c]) if v is not None)
    return _is_number(next(present, None)) and all(map(_is_number, present))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _align(rows: list[list[str]], right: list[bool]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip() for cells in rows]


#: columns that hold a fraction (of the step's time, of peak, predicted/measured - 1):
#: the terminal table shows them as percentages
FRACTION_COLUMNS = re.compile(r"(^|_)(share_of_time|mfu|efficiency|error)$")


def _percent(value) -> str:
    value = _plain(value)
    if not isinstance(value, float) or not math.isfinite(value):
        return _cell(value)
    return f"{value * 100:.3g}%" if abs(value) < 10 else f"{value * 100:,.0f}%"


_SECOND_UNITS = [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"), (1e-12, "ps")]


def _seconds_unit(frame: Rows, c):
    """(cell formatter, unit) putting a float column of seconds in one unit, that of
    its largest value; None for columns that are not floats or need no prefix."""
    if frame.kind(c) != "float":
        return None
    finite = [abs(v) for v in frame[c] if math.isfinite(v) and v != 0]
    if not finite or max(finite) >= 1:
        return None
    largest = max(finite)
    scale, unit = next(((f, u) for f, u in _SECOND_UNITS if largest >= f * 0.99995), _SECOND_UNITS[-1])

    def cell(value) -> str:
        value = _plain(value)
        if not isinstance(value, float) or not math.isfinite(value):
            return _cell(value)
        return f"{value / scale:.4g}"

    return cell, unit


def _table(frame: Rows) -> str:
    """An aligned plain-text table, numbers right-aligned. One row prints as
    ``key  value`` lines; a few rows too wide for a terminal print transposed, one
    column per row headed by its first cell (e.g. one column per model). Fraction
    columns (:data:`FRACTION_COLUMNS`) print as percentages."""
    cells = [_percent if FRACTION_COLUMNS.search(str(c)) else _cell for c in frame.columns]
    columns = [str(c) for c in frame.columns]
    if len(frame) > 1:  # one unit per seconds column: every cell in the largest value's unit
        for i, c in enumerate(frame.columns):
            unit = _seconds_unit(frame, c) if str(c).endswith("_s") else None
            if unit is not None:
                cells[i], columns[i] = unit[0], f"{c} ({unit[1]})"
    text = [[f(v) for f, v in zip(cells, row)] for row in frame.tuples()]
    numeric = _numeric(frame)
    if len(text) == 1 and len(columns) > 6:
        width = max(map(len, columns))
        return "\n".join(f"{c:<{width}}  {v}" for c, v in zip(columns, text[0]))
    if not text:
        return "  ".join(columns)
    lines = _align([columns] + text, numeric)
    if len(text) <= TRANSPOSE_ROWS and max(map(len, lines)) > WIDE:
        return _transposed(frame)
    widths = [max(len(columns[i]), *(len(r[i]) for r in text)) for i in range(len(columns))]
    return "\n".join([lines[0], _align([["-" * w for w in widths]], numeric)[0]] + lines[1:])


def _transposed(frame: Rows) -> str:
    """The table turned: one column per row, headed by its first cell."""
    cells = [_percent if FRACTION_COLUMNS.search(str(c)) else _cell for c in frame.columns]
    text = [[f(v) for f, v in zip(cells, row)] for row in frame.tuples()]
    columns = [str(c) for c in frame.columns]
    head = [columns[0]] + [r[0] for r in text]
    body = [[c] + [r[i] for r in text] for i, c in enumerate(columns) if i > 0]
    lines = _align([head] + body, [False] + [True] * len(text))
    return "\n".join([lines[0], "-" * max(map(len, lines))] + lines[1:])


def _markdown(frame: Rows) -> str:
    """A GitHub-flavoured pipe table; numbers right-aligned."""
    columns = [str(c).replace("|", "\\|") for c in frame.columns]
    rows = [[plain_cell(v).replace("|", "\\|") for v in row] for row in frame.tuples()]
    numeric = _numeric(frame)
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in rows])


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "×": r"$\times$", "µ": r"$\mu$", "<": r"\textless{}", ">": r"\textgreater{}"}


def _latex_text(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _latex_cell(value) -> str:
    text = plain_cell(value, latex=True)
    return text if text.startswith("$") else _latex_text(text)


def _latex(frame: Rows) -> str:
    """A booktabs tabular (needs ``\\usepackage{booktabs}``); numbers right-aligned;
    columns named in ``frame.attrs["latex_columns"]`` set as math."""
    numeric = _numeric(frame)
    math_columns = set(frame.attrs.get("latex_columns", ()))
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(_latex_text(str(c)) for c in frame.columns) + r" \\", r"\midrule"]
    for row in frame.tuples():
        cells = [f"${v}$" if c in math_columns and v is not None else _latex_cell(v) for c, v in zip(frame.columns, row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


#: the terminal width the compact view fits; the longest text cell it shows
TERMINAL = 120
CELL = 40


def compact(frame, width: int = TERMINAL) -> str:
    """The table view for a terminal ``width`` wide: columns with one value in every row
    (of several) move to a ``name: value`` header; long text cells are cut to
    :data:`CELL` characters; columns that still do not fit are left out, named on a
    last line (``--wide`` shows everything, ``--columns`` picks). ``frame.attrs["view"]``
    may name the columns this view shows first (the others count as left out)."""
    frame = Rows.of(frame)
    hidden = []
    view = [c for c in frame.attrs.get("view", ()) if c in frame.columns]
    if view:
        hidden = [c for c in frame.columns if c not in view]
        frame = frame.pick(view)
    if len(frame) == 1 and not hidden:
        return _record(frame, width)
    if frame.empty and not hidden:
        return _table(frame)
    if len(frame) <= TRANSPOSE_ROWS and not hidden:  # a few wide rows: one column per row
        clipped = _clipped(frame)
        text = _table(clipped)
        if max(map(len, text.splitlines())) <= width:
            return text
        turned = _transposed(clipped)
        if max(map(len, turned.splitlines())) <= width:
            return turned
    header = []
    if len(frame) > 1:
        same = [c for c in frame.columns if len({str(v) for v in frame[c] if not missing(v)}) == 1]
        header = [f"{c}: {_cell(frame[c][0])}" for c in same]
        frame = frame.drop(columns=same)
    shown = _clipped(frame)
    while len(shown.columns) > 1 and max(map(len, _table(shown).splitlines())) > width:
        hidden.insert(0, shown.columns[-1])
        shown = shown.drop(columns=shown.columns[-1])
    lines = _wrap("  ".join(header), width) + [_table(shown)]
    if hidden:
        noun = "column" if len(hidden) == 1 else "columns"
        lines += _wrap(f"({len(hidden)} more {noun}: {', '.join(map(str, hidden))}; --wide shows all, --columns picks)", width)
    return "\n".join(line for line in lines if line)


def _clipped(frame: Rows) -> Rows:
    """Text columns as their cells, cut to :data:`CELL` characters."""
    return frame.assign(**{c: [_clip(_cell(v)) for v in frame[c]] for c in frame.columns if not _numeric_column(frame, c)})


def _record(frame: Rows, width: int) -> str:
    """One row as ``name  value`` lines, long values wrapped under themselves."""
    import textwrap

    names = [str(c) for c in frame.columns]
    pad = max(map(len, names)) + 2
    cells = [_percent(v) if FRACTION_COLUMNS.search(n) else _cell(v) for n, v in zip(names, next(frame.tuples()))]
    lines = []
    for name, cell in zip(names, cells):
        wrapped = textwrap.wrap(cell, max(20, width - pad), break_on_hyphens=False, break_long_words=True) or [""]
        lines.append(f"{name:<{pad}}{wrapped[0]}".rstrip())
        lines += [" " * pad + more for more in wrapped[1:]]
    return "\n".join(lines)


def _clip(text: str) -> str:
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False) if text else []


def select(frame, columns: str):
    """The ``--columns a,b,c`` of ``frame`` (Rows or DataFrame, kept so) in that order;
    an unknown name is an error."""
    import difflib

    from perfmodel.errors import PerfmodelError

    names = [c.strip() for c in columns.split(",") if c.strip()]
    for name in names:
        if name not in frame.columns:
            close = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"columns: {', '.join(map(str, frame.columns))}"
            raise PerfmodelError(f"--columns: no column {name!r}; {hint}")
    if not names:
        raise PerfmodelError("--columns: give one or more column names, comma-separated")
    if isinstance(frame, Rows):
        return frame.pick(names)
    out = frame[names]
    out.attrs = dict(frame.attrs)
    return out


def _csv(frame: Rows) -> str:
    """What pandas' ``to_csv(index=False)`` writes: a missing value is empty, floats in
    full (``repr``), other values through the csv module."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(frame.columns)
    kinds = [frame.kind(c) for c in frame.columns]
    for row in frame.tuples():
        writer.writerow(["" if missing(v) else (str(v) if k != "object" else v) for v, k in zip(row, kinds)])
    return out.getvalue()


def render(frame, fmt: str = "table") -> str:
    """``frame`` (Rows or DataFrame) as text in ``fmt`` (one of :data:`FORMATS`)."""
    frame = Rows.of(frame)
    if fmt == "table":
        return _table(frame)
    if fmt == "csv":
        return _csv(frame).rstrip("\n")
    if fmt == "json":
        return json.dumps(records(frame), indent=2)
    if fmt == "markdown":
        return _markdown(frame)
    if fmt == "latex":
        return _latex(frame)
    raise ValueError(f"unknown format {fmt!r}")
