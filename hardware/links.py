"""Per-GPU interconnects: the scale-up link and the typical scale-out NIC of each catalog part.

``data/links.csv`` has one row per catalog key, each figure with its source
(``data/links-notes.md`` explains the columns). Unit rules, applied only here:

- scale-up ``scaleup_gbps_per_direction``: decimal GB/s per GPU per direction -> bytes/s
  (x 10**9, exact); NVIDIA's "900 GB/s" NVLink 4 is bidirectional, so 450 here.
- scale-out ``scaleout_gbit_per_s``: decimal Gb/s per GPU per direction -> bytes/s
  (x 10**9 / 8, exact): 400 Gb/s NDR = 50 * 10**9 bytes/s.
- a blank cell is unknown (None), never a guess.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from importlib import resources

from hardware.catalog import resolve_key
from perfmodel.errors import PerfmodelError

LINKS_FILE = "links.csv"
SCALE_UP_KINDS = ("nvlink", "pcie", "infinity-fabric", "roce", "ici")


@dataclass(frozen=True)
class Link:
    """One level of links as one GPU sees it: kind, bandwidth per direction, domain size."""

    kind: str
    generation: str
    bandwidth_bytes_per_s: int | None
    #: GPUs that reach each other over this link without a slower hop (8 HGX, 72 NVL72, 2 bridge)
    domain_gpus: int | None = None
    #: "nvswitch", "bridge", "mesh", "torus", "none" (scale-up); "" for a NIC
    switch: str = ""
    source: str = ""


@dataclass(frozen=True)
class Interconnect:
    """A catalog part's scale-up link, its typical scale-out NIC (or None) and whether NVLink SHARP runs."""

    key: str
    scale_up: Link
    scale_out: Link | None
    nvls: bool
    reference_system: str = ""
    confidence: str = ""
    notes: str = ""


def _exact(text: str, scale: Fraction, what: str) -> int | None:
    if not text.strip():
        return None
    value = Fraction(Decimal(text.strip())) * scale
    if value.denominator != 1 or value <= 0:
        raise ValueError(f"links data: {what}={text} is not a positive whole number of bytes/s")
    return int(value)


def _row_to_interconnect(row: dict[str, str]) -> Interconnect:
    key = row["key"]
    if row["scaleup_kind"] not in SCALE_UP_KINDS:
        raise ValueError(f"links data: {key} has unknown scaleup_kind {row['scaleup_kind']!r}")
    if row["nvls"] not in ("yes", "no"):
        raise ValueError(f"links data: {key}.nvls must be yes or no")
    up = Link(
        kind=row["scaleup_kind"],
        generation=row["scaleup_generation"],
        bandwidth_bytes_per_s=_exact(row["scaleup_gbps_per_direction"], Fraction(10**9), f"{key}.scaleup"),
        domain_gpus=int(row["scaleup_domain_gpus"]) if row["scaleup_domain_gpus"].strip() else None,
        switch=row["scaleup_switch"],
        source=row["scaleup_source"],
    )
    out = None
    if row["scaleout_kind"].strip():
        out = Link(
            kind=row["scaleout_kind"],
            generation="",
            bandwidth_bytes_per_s=_exact(row["scaleout_gbit_per_s"], Fraction(10**9, 8), f"{key}.scaleout"),
            source=row["scaleout_source"],
        )
    return Interconnect(key, up, out, row["nvls"] == "yes", row["scaleout_reference_system"],
                        row["confidence"], row["notes"])


@functools.cache
def interconnects() -> dict[str, Interconnect]:
    """Catalog key -> Interconnect, for every row of ``data/links.csv``."""
    text = (resources.files("hardware") / "data" / LINKS_FILE).read_text(encoding="utf-8")
    table = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["key"] in table:
            raise ValueError(f"links data: key {row['key']} appears twice")
        table[row["key"]] = _row_to_interconnect(row)
    return table


def interconnect(name: str) -> Interconnect:
    """The interconnect of a catalog part, by key, alias or name (``h100``, ``H100 SXM 80GB``)."""
    key = resolve_key(name)
    try:
        return interconnects()[key]
    except KeyError:
        raise PerfmodelError(f"accelerator {key!r} has no row in hardware/data/{LINKS_FILE}") from None
