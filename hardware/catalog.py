"""The accelerator catalog: every row of ``data/gpu-specs.csv`` as an :class:`Accelerator`,
looked up by key, alias or name, plus user accelerator files (JSON or YAML).

``data/gpu-specs.csv`` is the research table, copied unchanged from ``shared/data/``;
``data/gpu-specs-added.csv`` holds rows researched in this repository (same columns, each
with its source; not in the shared table); ``data/catalog-keys.csv`` adds per row the key,
aliases, memory-capacity rule and efficiency defaults, each with its reason. Unit rules, applied only in :func:`_row_to_accelerator`:

- peaks: CSV TFLOP/s (TOP/s for int8), dense, -> exact integer FLOP/s (x 10**12 on the
  decimal string, never a float product); a blank cell is no peak, never a guess.
  ``fp32`` is the non-tensor (CUDA-core / vector) rate and also ``vector_flops_per_s``.
- memory bandwidth: decimal GB/s -> bytes/s (x 10**9).
- memory capacity: the vendor's "GB" label on every row is GiB (x 2**30; the row's
  ``memory_unit`` and ``memory_note`` say why; exposed capacity, the driver shows up to
  ~0.5% less).
- ``l2_mb`` is MiB (x 2**20): NVIDIA's "50 MB" L2 is 50 MiB (FA3 Table 1).
- ``nvlink_gbps_bidir``: decimal GB/s, bidirectional total per device (NVLink, Infinity
  Fabric, RoCE or ICI: ``extra["interconnect"]``); 0 means no link and is stored as 0,
  a blank cell means unknown and is stored as None.
- efficiencies: ``matmul_efficiency`` = measured MAMF / this row's dense BF16 peak where
  hw-notes §4 has a measurement, else the row's family default, else None;
  ``bandwidth_efficiency`` likewise (hw-notes §4). Kept apart from the peaks.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from importlib import resources
from pathlib import Path

from perfmodel.hardware.accelerator import Accelerator
from perfmodel.hardware.cost_data import params_for, with_overrides
from perfmodel.errors import PerfmodelError, UnknownNameError
from perfmodel.files import parse_json, parse_yaml, read_text, write_text
from perfmodel.units import DTYPES, GIB

#: Accelerator.peak_flops_per_s key -> gpu-specs.csv column (TFLOP/s, or TOP/s for int8)
PEAK_COLUMNS = {
    "fp32": "fp32_tflops",
    "tf32": "tf32_tflops_dense",
    "bf16": "bf16_tflops_dense",
    "fp16": "fp16_tflops_dense",
    "fp8": "fp8_tflops_dense",
    "int8": "int8_tops_dense",
}
MEMORY_UNITS = {"GiB": GIB, "GB": 10**9}
_INTERCONNECT_KIND = {"NVIDIA": "NVLink", "AMD": "Infinity Fabric", "Intel": "RoCE Ethernet", "Google": "ICI"}
_FILE_SUFFIXES = (".json", ".yaml", ".yml")
#: the spec tables, read in this order: the shared copy, then the rows added here
SPEC_FILES = ("gpu-specs.csv", "gpu-specs-added.csv")


# ---------------------------------------------------------------- the catalog


def _data_text(name: str) -> str:
    return (resources.files("perfmodel.hardware") / "data" / name).read_text(encoding="utf-8")


def _read_csv(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_data_text(name))))


def _exact(text: str, scale: int, what: str) -> int:
    """A decimal string times ``scale`` as an exact integer (raises if not whole)."""
    value = Fraction(Decimal(text.strip())) * scale
    if value.denominator != 1:
        raise ValueError(f"catalog data: {what}={text} x {scale} is not a whole number")
    return int(value)


def _optional_int(text: str) -> int | None:
    return int(text) if text.strip() else None


def _row_to_accelerator(spec: dict[str, str], keys: dict[str, str]) -> Accelerator:
    """One gpu-specs.csv row plus its catalog-keys.csv row -> Accelerator (all unit rules here)."""
    name = spec["name"]
    peaks = {d: _exact(spec[c], 10**12, f"{name}.{c}") for d, c in PEAK_COLUMNS.items() if spec[c].strip()}
    link = spec["nvlink_gbps_bidir"].strip()
    extra: dict[str, object] = {
        "form_factor": spec["form_factor"],
        "memory_label": f"{spec['memory_gb']} GB",
        "memory_note": keys["memory_note"],
    }
    if link and float(link) > 0:
        extra["interconnect"] = f"{_INTERCONNECT_KIND.get(spec['vendor'], spec['vendor'])}, bidirectional"

    def measured_fraction(column: str, dtype: str) -> float | None:
        if not keys[column].strip():
            return None
        if dtype not in peaks:
            raise ValueError(f"catalog data: {name} has {column} but no {dtype} peak")
        return float(Fraction(_exact(keys[column], 10**12, f"{name}.{column}"), peaks[dtype]))

    matmul = measured_fraction("mamf_bf16_tflops", "bf16")
    if matmul is not None and keys["matmul_efficiency"].strip():
        raise ValueError(f"catalog data: {name} has both a MAMF measurement and a matmul_efficiency default")
    if matmul is None and keys["matmul_efficiency"].strip():
        matmul = float(keys["matmul_efficiency"])
    fp8 = measured_fraction("mamf_fp8_tflops", "fp8")
    if fp8 is not None:
        extra["matmul_efficiency_fp8"] = fp8
    tdp = spec["tdp_w"].strip()
    return Accelerator(
        name=name,
        key=keys["key"],
        vendor=spec["vendor"],
        aliases=tuple(keys["aliases"].split()),
        memory_bytes=_exact(spec["memory_gb"], MEMORY_UNITS[keys["memory_unit"]], f"{name}.memory_gb"),
        memory_bandwidth_bytes_per_s=_exact(spec["mem_bw_gbps"], 10**9, f"{name}.mem_bw_gbps"),
        peak_flops_per_s=peaks,
        vector_flops_per_s=peaks.get("fp32"),
        l2_bytes=_exact(spec["l2_mb"], 2**20, f"{name}.l2_mb") if spec["l2_mb"].strip() else None,
        sm_count=_optional_int(spec["sm_count"]),
        interconnect_bytes_per_s=_exact(link, 10**9, f"{name}.nvlink_gbps_bidir") if link else None,
        pcie_gen=_optional_int(spec["pcie_gen"]),
        tdp_w=_exact(tdp, 1, f"{name}.tdp_w") if tdp else None,
        matmul_efficiency=matmul,
        bandwidth_efficiency=float(keys["bandwidth_efficiency"]) if keys["bandwidth_efficiency"].strip() else None,
        efficiency_source=f"matmul: {keys['matmul_efficiency_source']}; bandwidth: {keys['bandwidth_efficiency_source']}",
        source=spec["source"],
        notes=keys["notes"],
        extra=extra,
    )


def _norm(name: str) -> str:
    """Lookup form: case, spaces, hyphens, underscores and punctuation ignored."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _fabric(acc: Accelerator):
    """The part's links and collective parameters (None without a links row)."""
    from perfmodel.hardware.links import fabric_for  # links reads the catalog's keys

    return fabric_for(acc.key)


@functools.cache
def _load() -> tuple[dict[str, Accelerator], dict[str, str]]:
    """(key -> Accelerator, lookup form of every key/alias/name -> key); the only registry."""
    specs: dict[str, dict[str, str]] = {}
    for row in (row for file in SPEC_FILES for row in _read_csv(file)):
        if specs.setdefault(row["name"], row) is not row:
            raise ValueError(f"catalog data: {row['name']!r} appears in more than one spec row")
    keyrows = {row["name"]: row for row in _read_csv("catalog-keys.csv")}
    if specs.keys() != keyrows.keys():
        raise ValueError(f"catalog data: rows without a key or spec: {sorted(specs.keys() ^ keyrows.keys())}")
    table: dict[str, Accelerator] = {}
    index: dict[str, str] = {}
    for name, spec in specs.items():
        acc = _row_to_accelerator(spec, keyrows[name])
        acc = dataclasses.replace(acc, cost=params_for(acc), fabric=_fabric(acc))
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", acc.key) or acc.key in table:
            raise ValueError(f"catalog data: bad or duplicate key {acc.key!r}")
        table[acc.key] = acc
        for label in (acc.key, acc.name, *acc.aliases):
            if index.setdefault(_norm(label), acc.key) != acc.key:
                raise ValueError(f"catalog data: {label!r} names both {index[_norm(label)]} and {acc.key}")
    return table, index


def catalog() -> dict[str, Accelerator]:
    """Every catalog accelerator by key, in SPEC_FILES row order."""
    return dict(_load()[0])


def aliases() -> dict[str, str]:
    """Declared alias -> catalog key (keys and CSV names also resolve)."""
    return {alias: acc.key for acc in _load()[0].values() for alias in acc.aliases}


def resolve_key(name: str) -> str:
    """The catalog key for a key, alias or CSV name; UnknownNameError with close matches."""
    key = _load()[1].get(_norm(name))
    if key is None:
        raise UnknownNameError("accelerator", name, [*_load()[0], *aliases()])
    return key


def _is_path(text: str) -> bool:
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return any(s in text for s in seps) or text.lower().endswith(_FILE_SUFFIXES)


def get_accelerator(name_or_path: str | Accelerator) -> Accelerator:
    """A catalog accelerator by key/alias/name, else a user file (a string holding a path
    separator or ending in .json/.yaml/.yml); an Accelerator passes through."""
    if isinstance(name_or_path, Accelerator):
        return name_or_path
    text = str(name_or_path).strip()
    table = _load()[0]
    # a CSV name may hold a slash ("B200 (HGX/DGX per GPU)"): exact names win over paths
    exact_names = {acc.name.lower(): key for key, acc in table.items()}
    if text.lower() in exact_names:
        return table[exact_names[text.lower()]]
    if _is_path(text):
        return load_accelerator_file(text)
    return table[resolve_key(text)]


#: catalog_frame's columns; the first ones are those CLI.md promises to scripts
FRAME_COLUMNS = (
    "name", "key", "vendor", "memory_bytes", "memory_gib", "memory_bandwidth_bytes_per_s",
    *(f"peak_flops_per_s_{d}" for d in DTYPES),
    "vector_flops_per_s", "ridge_point_flop_per_byte_bf16", "interconnect_bytes_per_s",
    "matmul_efficiency", "bandwidth_efficiency", "source",
    "aliases", "l2_bytes", "sm_count", "pcie_gen", "tdp_w", "measured", "efficiency_source", "notes",
)


def catalog_frame(accelerators: Iterable[Accelerator] | Accelerator | None = None):
    """One row per accelerator (default: the whole catalog), numbers in base units."""
    import pandas as pd

    if accelerators is None:
        accelerators = _load()[0].values()
    elif isinstance(accelerators, Accelerator):
        accelerators = [accelerators]
    rows = []
    for acc in accelerators:
        row = {"name": acc.name, "key": acc.key, "vendor": acc.vendor, "memory_bytes": acc.memory_bytes,
               "memory_gib": acc.memory_bytes / GIB,
               "memory_bandwidth_bytes_per_s": acc.memory_bandwidth_bytes_per_s}
        row.update({f"peak_flops_per_s_{d}": acc.peak_flops_per_s.get(d) for d in DTYPES})
        bf16 = acc.peak_flops_per_s.get("bf16")
        row.update({
            "vector_flops_per_s": acc.vector_peak,
            "ridge_point_flop_per_byte_bf16": bf16 / acc.memory_bandwidth_bytes_per_s if bf16 else None,
            "interconnect_bytes_per_s": acc.interconnect_bytes_per_s,
            "matmul_efficiency": acc.matmul_efficiency,
            "bandwidth_efficiency": acc.bandwidth_efficiency,
            "source": acc.source,
            "aliases": " ".join(acc.aliases),
            "l2_bytes": acc.l2_bytes, "sm_count": acc.sm_count, "pcie_gen": acc.pcie_gen, "tdp_w": acc.tdp_w,
            "measured": acc.measured, "efficiency_source": acc.efficiency_source, "notes": acc.notes,
        })
        rows.append(row)
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    # float64 with NaN for "no peak": exact for every rate below 2**53 (9e15 FLOP/s)
    peak_columns = [f"peak_flops_per_s_{d}" for d in DTYPES]
    frame[peak_columns] = frame[peak_columns].astype("float64")
    return frame


# ---------------------------------------------------------------- user files

_FIELDS = tuple(f.name for f in dataclasses.fields(Accelerator))
_REQUIRED = ("name", "memory_bytes", "memory_bandwidth_bytes_per_s", "peak_flops_per_s")
_TEXT = ("name", "key", "vendor", "efficiency_source", "source", "notes")
_WHOLE = ("memory_bytes", "l2_bytes", "sm_count", "pcie_gen")  # positive integers
_RATES = ("memory_bandwidth_bytes_per_s", "vector_flops_per_s", "tdp_w")  # positive numbers
_FRACTIONS = ("matmul_efficiency", "bandwidth_efficiency")
#: plausible ranges (base units) for a user file; outside them a unit slip is likely
#: (3.35 for 3.35 TB/s): refused, naming the range. CPUs sit at the low ends.
_PLAUSIBLE = {
    "memory_bandwidth_bytes_per_s": (1e8, 1e15, "bytes/s", "3.35e12 for 3.35 TB/s"),
    # a measured CPU's fp16 matmul can run under 1 GFLOP/s; 989 (TFLOP/s meant) is still refused
    "peak_flops_per_s": (1e6, 1e18, "FLOP/s", "989e12 for 989 TFLOP/s"),
    "vector_flops_per_s": (1e6, 1e18, "FLOP/s", "67e12 for 67 TFLOP/s"),
    "memory_bytes": (2**24, 2**50, "bytes", "85899345920 for 80 GiB"),
    "interconnect_bytes_per_s": (1e8, 1e14, "bytes/s", "900e9 for 900 GB/s"),
    "l2_bytes": (2**10, 2**36, "bytes", "52428800 for 50 MiB"),
    "tdp_w": (1, 1e5, "W", "700"),
}
#: the largest decimal exponent a number in a user file may have (either sign)
_MAX_EXPONENT = 30
_PEAK_PREFIX = "peak_flops_per_s_"
_RIDGE_PREFIX = "ridge_point_flop_per_byte_"


class _Fields:
    """Field-by-field conversion of one mapping; every error names ``origin`` and the field."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, field: str, problem: str) -> PerfmodelError:
        return PerfmodelError(f"{self.origin}: {field}: {problem}")

    def number(self, field: str, value) -> int | float:
        """int where the value is whole (exactly), else float; numeric strings accepted
        (YAML reads ``3.35e12`` as a string)."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.fail(field, f"expected a number, got {type(value).__name__} {value!r}")
        if isinstance(value, int):
            return value
        try:
            decimal = Decimal(repr(value) if isinstance(value, float) else value.strip())
        except (InvalidOperation, ValueError):
            raise self.fail(field, f"expected a finite number, got {value!r}") from None
        if not decimal.is_finite():
            raise self.fail(field, f"expected a finite number, got {value!r}")
        if decimal and abs(decimal.adjusted()) > _MAX_EXPONENT:
            raise self.fail(field, f"{str(value)[:40]} is out of range (exponent beyond ±{_MAX_EXPONENT})")
        exact = Fraction(value) if isinstance(value, float) else Fraction(decimal)
        return int(exact) if exact.denominator == 1 else float(exact)

    def plausible(self, field: str, number, kind: str | None = None) -> None:
        """Refuse a value outside :data:`_PLAUSIBLE`'s range for ``kind`` (default ``field``)."""
        low, high, unit, example = _PLAUSIBLE[kind or field]
        if number and not low <= number <= high:
            raise self.fail(field, f"{number:g} {unit} is implausible (expected {low:g} to {high:g} {unit}; "
                                   f"give base units, e.g. {example})")

    def positive(self, field: str, value, whole: bool = False, allow_zero: bool = False) -> int | float:
        number = self.number(field, value)
        if isinstance(number, int) and abs(number) > 10**_MAX_EXPONENT:
            raise self.fail(field, f"{str(value)[:40]} is out of range (more than 10**{_MAX_EXPONENT})")
        if whole and not isinstance(number, int):
            raise self.fail(field, f"expected a whole number, got {value!r}")
        if number < 0 or (number == 0 and not allow_zero):
            raise self.fail(field, f"must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
        return number

    def peaks(self, field: str, value) -> dict[str, int | float]:
        if not isinstance(value, Mapping):
            raise self.fail(field, f"expected a mapping of dtype to FLOP/s, got {type(value).__name__}")
        out, seen = {}, {}
        for dtype, rate in value.items():
            dtype_key = str(dtype).lower()
            if dtype_key not in DTYPES:
                raise self.fail(f"{field}.{dtype}", f"unknown dtype (known: {', '.join(DTYPES)})")
            if dtype_key in seen:
                raise self.fail(f"{field}.{dtype}", f"given twice (also as {seen[dtype_key]!r}; dtypes ignore case)")
            seen[dtype_key] = dtype
            if rate is not None:
                out[dtype_key] = self.positive(f"{field}.{dtype}", rate)
                self.plausible(f"{field}.{dtype}", out[dtype_key], "peak_flops_per_s")
        return out

    def convert(self, field: str, value):
        if field in _TEXT:
            if not isinstance(value, str) or (field == "name" and not value.strip()):
                raise self.fail(field, f"expected {'a non-empty' if field == 'name' else 'a'} string, got {value!r}")
            return value
        if field in _WHOLE:
            number = self.positive(field, value, whole=True)
        elif field in _RATES:
            number = self.positive(field, value)
        elif field == "interconnect_bytes_per_s":
            number = self.positive(field, value, allow_zero=True)
        else:
            number = None
        if number is not None:
            if field in _PLAUSIBLE:
                self.plausible(field, number)
            return number
        if field in _FRACTIONS:
            number = self.number(field, value)
            if not 0 < number <= 1:
                raise self.fail(field, f"must be a fraction of peak in (0, 1], got {value!r}")
            return float(number)
        if field == "measured":
            if not isinstance(value, bool):
                raise self.fail(field, f"expected true or false, got {value!r}")
            return value
        if field == "aliases":
            if isinstance(value, str):
                return tuple(value.replace(",", " ").split())
            if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
                raise self.fail(field, "expected a list of strings")
            return tuple(value)
        if field == "extra":
            if not isinstance(value, Mapping):
                raise self.fail(field, f"expected a mapping, got {type(value).__name__}")
            return {str(k): v for k, v in value.items()}
        if field == "peak_flops_per_s":
            return self.peaks(field, value)
        raise AssertionError(field)


def accelerator_from_dict(data: object, origin: str = "accelerator") -> Accelerator:
    """Validate a mapping of Accelerator fields (or one record of ``catalog_frame``'s JSON
    export, with flat ``peak_flops_per_s_<dtype>`` columns) field by field."""
    f = _Fields(origin)
    if not isinstance(data, Mapping):
        raise PerfmodelError(f"{origin}: expected a mapping of accelerator fields, got {type(data).__name__}")
    fields: dict[str, object] = {}
    flat_peaks: dict[str, object] = {}
    derived: dict[str, object] = {}
    cost: object = None
    for name, value in data.items():
        name = str(name)
        if name == "cost":
            cost = value
        elif name.startswith(_PEAK_PREFIX):
            flat_peaks[name[len(_PEAK_PREFIX):]] = value
        elif name == "memory_gib" or name.startswith(_RIDGE_PREFIX):
            derived[name] = value
        elif name in _FIELDS:
            fields[name] = value
        else:
            close = difflib.get_close_matches(name, _FIELDS, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"known fields: {', '.join(_FIELDS)}"
            raise f.fail(name, f"unknown field; {hint}")
    values = {k: f.convert(k, v) for k, v in fields.items() if v is not None}
    peaks = {}
    for dtype, rate in flat_peaks.items():
        if dtype not in DTYPES:
            hint = f"write it {dtype.lower()!r}" if dtype.lower() in DTYPES else f"known: {', '.join(DTYPES)}"
            raise f.fail(f"{_PEAK_PREFIX}{dtype}", f"unknown dtype ({hint})")
        if rate is not None:
            peaks[dtype] = f.positive(f"{_PEAK_PREFIX}{dtype}", rate)
            f.plausible(f"{_PEAK_PREFIX}{dtype}", peaks[dtype], "peak_flops_per_s")
    for dtype, rate in values.get("peak_flops_per_s", {}).items():
        if dtype in peaks and peaks[dtype] != rate:
            raise f.fail(f"{_PEAK_PREFIX}{dtype}", f"{peaks[dtype]} disagrees with peak_flops_per_s.{dtype}={rate}")
        peaks[dtype] = rate
    if "peak_flops_per_s" in fields or flat_peaks:
        values["peak_flops_per_s"] = peaks
    gib = derived.get("memory_gib")
    if gib is not None:
        gib = f.positive("memory_gib", gib)
        if "memory_bytes" not in values:
            exact = Fraction(gib) * GIB
            if exact.denominator != 1:
                raise f.fail("memory_gib", f"{gib} GiB is not a whole number of bytes; give memory_bytes")
            values["memory_bytes"] = int(exact)
        elif not math.isclose(values["memory_bytes"] / GIB, gib, rel_tol=1e-6):
            raise f.fail("memory_gib", f"{gib} disagrees with memory_bytes={values['memory_bytes']} "
                                       "(edit memory_bytes, or drop memory_gib)")
    for name in _REQUIRED:
        if name not in values:
            raise f.fail(name, "missing required field")
    if not values["peak_flops_per_s"]:
        raise f.fail("peak_flops_per_s", "give at least one dtype's dense peak FLOP/s")
    for name, value in derived.items():
        if name.startswith(_RIDGE_PREFIX) and value is not None:
            dtype = name[len(_RIDGE_PREFIX):]
            rate = values["peak_flops_per_s"].get(dtype)
            given = f.positive(name, value)
            if rate is None or not math.isclose(rate / values["memory_bandwidth_bytes_per_s"], given, rel_tol=1e-6):
                raise f.fail(name, f"{value} is derived (peak / bandwidth) and disagrees with the peaks; drop it")
    try:
        acc = Accelerator(**values)
        return dataclasses.replace(acc, cost=with_overrides(params_for(acc), cost, f"{origin}: cost"), fabric=_fabric(acc))
    except PerfmodelError as exc:
        raise PerfmodelError(f"{origin}: {exc}") from None


def _parse(path: Path, text: str) -> object:
    """JSON or YAML by suffix, strictly (:mod:`perfmodel.files`); errors name the file."""
    if path.suffix.lower() == ".json":
        return parse_json(text, str(path))
    return parse_yaml(text, str(path))


def load_accelerator_file(path: str | os.PathLike) -> Accelerator:
    """Read a user accelerator file (.json/.yaml/.yml): Accelerator fields, or one record
    of ``perfmodel hardware show --format json``."""
    path = Path(path)
    if path.suffix.lower() not in _FILE_SUFFIXES:
        raise PerfmodelError(f"accelerator file {str(path)!r}: name must end in .json, .yaml or .yml")
    if not os.path.lexists(path) and len(path.name) < 255:
        raise PerfmodelError(f"accelerator file {str(path)!r} not found")
    data = _parse(path, read_text(path, "accelerator file"))
    if isinstance(data, list):
        if len(data) != 1:
            raise PerfmodelError(f"{path}: holds {len(data)} records; an accelerator file describes one")
        data = data[0]
    if data is None:
        raise PerfmodelError(f"{path}: empty file; expected a mapping of accelerator fields")
    return accelerator_from_dict(data, origin=str(path))


def accelerator_to_dict(acc: Accelerator) -> dict[str, object]:
    """Accelerator -> plain mapping (fields that differ from their defaults), the form
    :func:`accelerator_from_dict` reads back."""
    out: dict[str, object] = {}
    for fld in dataclasses.fields(Accelerator):
        if fld.name in ("cost", "fabric"):  # derived from the key, data/cost-model.json and the collective fit
            continue
        value = getattr(acc, fld.name)
        default = fld.default_factory() if fld.default_factory is not dataclasses.MISSING else fld.default
        if fld.name in _REQUIRED or value != default:
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[fld.name] = value
    return out


def dump_accelerator_file(acc: Accelerator, path: str | os.PathLike) -> None:
    """Write ``acc`` as JSON or YAML (by suffix) for a user to edit and load back."""
    path = Path(path)
    data = accelerator_to_dict(acc)
    if path.suffix.lower() == ".json":
        write_text(path, json.dumps(data, indent=2) + "\n")
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        raise PerfmodelError(f"accelerator file {str(path)!r}: name must end in .json, .yaml or .yml")
