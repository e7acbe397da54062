"""Render a DataFrame as a terminal table, CSV, JSON records, Markdown or LaTeX.

Frames hold numbers; formatting happens only here. JSON keeps counts as exact
integers (pandas would turn a column with a missing value into floats).
"""

from __future__ import annotations

import json
import math

import pandas as pd

FORMATS = ("table", "csv", "json", "markdown", "latex")


def _plain(value):
    """A JSON-ready Python value: exact ints, floats, None for NaN, lists kept."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values (ints stay ints)."""
    columns = list(frame.columns)
    return [{c: _plain(v) for c, v in zip(columns, row)} for row in frame.itertuples(index=False, name=None)]


def _cell(value) -> str:
    """A human-readable cell: grouped integers, 4 significant digits for floats."""
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e6:
            return f"{value:.4g}"
        return f"{value:.4g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    if isinstance(value, list):
        return "×".join(str(v) for v in value)
    return str(value)


def _table(frame: pd.DataFrame) -> str:
    """An aligned plain-text table; numbers right-aligned; one row shows as key: value."""
    text = [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    columns = [str(c) for c in frame.columns]
    if len(text) == 1 and len(columns) > 6:
        width = max(map(len, columns))
        return "\n".join(f"{c:<{width}}  {v}" for c, v in zip(columns, text[0]))
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns]

    def line(cells):
        return "  ".join(cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in text])


def _markdown(frame: pd.DataFrame) -> str:
    columns = [str(c) for c in frame.columns]
    rows = [[_cell(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False, name=None)]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns]
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in rows])


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "×": r"$\times$"}


def _latex_text(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _latex(frame: pd.DataFrame) -> str:
    """A booktabs tabular (needs ``\\usepackage{booktabs}``); numbers right-aligned."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns]
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(_latex_text(str(c)) for c in frame.columns) + r" \\", r"\midrule"]
    for row in frame.itertuples(index=False, name=None):
        lines.append(" & ".join(_latex_text(_cell(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def render(frame: pd.DataFrame, fmt: str = "table") -> str:
    """``frame`` as text in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "table":
        return _table(frame)
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return json.dumps(records(frame), indent=2)
    if fmt == "markdown":
        return _markdown(frame)
    if fmt == "latex":
        return _latex(frame)
    raise ValueError(f"unknown format {fmt!r}")
