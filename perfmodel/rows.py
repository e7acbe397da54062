"""A result table as plain Python rows: what the CLI renders without importing pandas.

A :class:`Rows` holds named columns of Python values and ``attrs`` (as a DataFrame's),
and gives each column the kind pandas would infer from the same values (``int``,
``float``, ``bool`` or ``object``: ints beside floats or a missing value become floats),
so a table renders the same whether it went through pandas or not. It supports the few
DataFrame operations the commands use (``frame[c]``, ``frame[c] = v``, ``drop``,
``assign``); :meth:`Rows.frame` is the pandas DataFrame, for notebooks and for the
commands that need one (:func:`framed`). :meth:`Rows.of` reads a DataFrame back, so
there is one renderer (:mod:`perfmodel.export`).
"""

from __future__ import annotations

import functools
import math

INT64 = (-(2**63), 2**63)
UINT64 = (0, 2**64)


def missing(value) -> bool:
    """None, NaN, or pandas' NA/NaT."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ in ("NAType", "NaTType")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def infer_kind(values: list) -> str:
    """The kind pandas gives a column built from these Python values."""
    present = [v for v in values if not missing(v)]
    if not present:
        return "float" if any(isinstance(v, float) for v in values) else "object"
    if all(isinstance(v, bool) for v in present):
        return "object" if len(present) < len(values) else "bool"
    if all(_is_int(v) or isinstance(v, float) for v in present):
        if len(present) < len(values) or any(isinstance(v, float) for v in present):
            return "float"
        for low, high in (INT64, UINT64):
            if all(low <= v < high for v in present):
                return "int"
    return "object"


def _normal(values: list, kind: str) -> list:
    """Values as that kind holds them: floats (NaN for missing) in a float column."""
    if kind == "float":
        return [math.nan if missing(v) else float(v) for v in values]
    return list(values)


class Rows:
    """Named columns of Python values with pandas' column kinds, and ``attrs``."""

    def __init__(self, records: list[dict] = (), attrs: dict | None = None):
        columns: dict[str, list] = {}
        for i, record in enumerate(records):
            for name in record:
                columns.setdefault(name, [None] * i)
            for name, values in columns.items():
                values.append(record.get(name))
        self._data: dict = {}
        self._kinds: dict = {}
        self.attrs: dict = dict(attrs or {})
        self._length = len(records)
        for name, values in columns.items():
            self[name] = values

    @classmethod
    def of(cls, frame) -> Rows:
        """A pandas DataFrame (or Rows, returned as is) as Rows with its dtypes' kinds."""
        if isinstance(frame, Rows):
            return frame
        rows = cls(attrs=frame.attrs)
        rows._length = len(frame)
        for i, name in enumerate(frame.columns):
            column = frame.iloc[:, i]
            kind = {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(column.dtype.kind, "object")
            rows._data[name], rows._kinds[name] = column.tolist(), kind
        return rows

    @property
    def columns(self) -> list:
        return list(self._data)

    @property
    def empty(self) -> bool:
        return not self._length or not self._data

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, name) -> list:
        return list(self._data[name])

    def __setitem__(self, name, values) -> None:
        """A column: a list (one value per row) or one value for every row."""
        values = list(values) if isinstance(values, (list, tuple)) else [values] * self._length
        if len(values) != self._length:
            raise ValueError(f"column {name!r}: {len(values)} values for {self._length} rows")
        kind = infer_kind(values)
        self._data[name], self._kinds[name] = _normal(values, kind), kind

    def kind(self, name) -> str:
        """``int``, ``float``, ``bool`` or ``object``."""
        return self._kinds[name]

    def pick(self, names) -> Rows:
        """These columns, in this order (``attrs`` kept)."""
        out = Rows(attrs=self.attrs)
        out._length = self._length
        for name in names:
            out._data[name], out._kinds[name] = self._data[name], self._kinds[name]
        return out

    def drop(self, columns) -> Rows:
        gone = {columns} if isinstance(columns, str) else set(columns)
        return self.pick([c for c in self._data if c not in gone])

    def assign(self, **columns) -> Rows:
        """A copy with these columns set (replaced in place, or added at the end)."""
        out = self.pick(self._data)
        for name, values in columns.items():
            out[name] = values
        return out

    def tuples(self):
        """The rows as tuples, in column order."""
        return zip(*self._data.values()) if self._data else iter([()] * self._length)

    def records(self) -> list[dict]:
        names = self.columns
        return [dict(zip(names, row)) for row in self.tuples()]

    def frame(self):
        """The pandas DataFrame of these rows (``attrs`` copied)."""
        import pandas as pd

        frame = pd.DataFrame(self.records(), columns=self.columns) if self._data else pd.DataFrame(index=range(self._length))
        frame.attrs = dict(self.attrs)
        return frame


def column_sum(values: list[float]) -> float:
    """The sum of a float column as pandas (numpy's pairwise summation: blocks of 8
    partial sums, halves above 128 values) takes it, so a share of a total reads the
    same through either path, without importing numpy."""
    n = len(values)
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    if n <= 128:
        partial = list(values[:8])
        end = n - n % 8
        for i in range(8, end, 8):
            for j in range(8):
                partial[j] += values[i + j]
        total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]))
        for v in values[end:]:
            total += v
        return total
    half = n // 2
    half -= half % 8
    return column_sum(values[:half]) + column_sum(values[half:])


def framed(query):
    """The public form of a query that builds :class:`Rows`: the same result as a pandas
    DataFrame; the Rows form stays at ``.rows`` (the CLI renders it without pandas)."""

    @functools.wraps(query)
    def public(*args, **kwargs):
        return query(*args, **kwargs).frame()

    public.rows = query
    return public
