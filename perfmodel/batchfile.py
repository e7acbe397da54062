"""Row files for ``perfmodel batch``: CSV or JSON lines, one row of option values each.

A file is read whole into a list of rows before anything runs, so a malformed file is
refused with one message (naming the file and the line) instead of failing half-way.
Each row maps a column name to a value: a string (CSV cells; JSON strings), a JSON
number or boolean, or a list of those; a missing value (empty CSV cell, JSON ``null``
or absent key) is left out of the row. Which column is which option is the caller's
business: this module knows files, not commands (no click here).
"""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

from perfmodel.errors import PerfmodelError
from perfmodel.files import strict_hooks

#: what separates the values of a multi-valued option in a CSV cell
LIST_SEPARATOR = ";"
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    """The columns (in first-seen order) and the rows of ``path``.

    The format is ``.csv`` or ``.jsonl``/``.ndjson`` by extension, otherwise sniffed
    (a first character ``{`` means JSON lines)."""
    from perfmodel.files import MAX_BYTES

    try:
        info = path.stat()  # a FIFO or a device would block or never end: not read
        if not stat.S_ISREG(info.st_mode):
            raise PerfmodelError(f"{path}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise PerfmodelError(f"{path}: {info.st_size:,} bytes is more than the {MAX_BYTES:,}-byte limit")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise PerfmodelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PerfmodelError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    if not text.strip():
        raise PerfmodelError(f"{path}: empty file, expected rows of option values")
    suffix = path.suffix.lower()
    is_json = suffix in (".jsonl", ".ndjson") or (suffix != ".csv" and text.lstrip().startswith("{"))
    columns, rows = (_json_lines if is_json else _csv)(path, text)
    if not rows:
        raise PerfmodelError(f"{path}: no rows" + ("" if is_json else " below the header"))
    return columns, rows


def _csv(path: Path, text: str) -> tuple[list[str], list[dict]]:
    """A header line of column names, then one row per line; cells are stripped."""
    lines = [(n, cells) for n, cells in _numbered(csv.reader(io.StringIO(text), strict=True), path) if cells]
    (_, header), body = lines[0], lines[1:]
    header = [c.strip() for c in header]
    if "" in header:
        raise PerfmodelError(f"{path} line 1: column {header.index('') + 1} has no name")
    seen = set()
    for name in header:
        if name in seen:
            raise PerfmodelError(f"{path} line 1: column {name!r} appears twice")
        seen.add(name)
    rows = []
    for number, cells in body:
        if len(cells) != len(header):
            raise PerfmodelError(f"{path} line {number}: {len(cells)} cells, the header has {len(header)}")
        rows.append({c: v.strip() for c, v in zip(header, cells) if v.strip()})
    return header, rows


def _numbered(reader, path: Path):
    """``(line number, cells)`` for each CSV record; a CSV syntax error names its line."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise PerfmodelError(f"{path} line {reader.line_num}: malformed CSV: {exc}") from None
        yield reader.line_num, cells


def _json_lines(path: Path, text: str) -> tuple[list[str], list[dict]]:
    """One JSON object per line; blank lines are skipped."""
    columns: dict[str, None] = {}
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, **strict_hooks(f"{path} line {number}"))
        except RecursionError:
            raise PerfmodelError(f"{path} line {number}: nested too deeply") from None
        except json.JSONDecodeError as exc:
            raise PerfmodelError(f"{path} line {number}: malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise PerfmodelError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
        for key, value in record.items():
            if not _flat(value):
                raise PerfmodelError(f"{path} line {number}: {key!r} holds {type(value).__name__} {json.dumps(value)[:40]}; a value is a string, number, boolean, null or a list of those")
        columns.update(dict.fromkeys(record))
        rows.append({k: v for k, v in record.items() if v is not None})
    return list(columns), rows


def _flat(value, depth: int = 0) -> bool:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    return depth == 0 and isinstance(value, list) and all(_flat(v, 1) and v is not None for v in value)


def as_list(value) -> list:
    """A multi-valued option's values: a JSON list as is, a CSV cell split on ``;``."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [part.strip() for part in value.split(LIST_SEPARATOR) if part.strip()]
    return [value]


def as_flag(value) -> bool:
    """An on/off option's value: a JSON boolean, or true/false (1/0, yes/no, on/off) text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise PerfmodelError(f"expected true or false, got {value!r}")
