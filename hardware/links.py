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

from perfmodel.hardware.catalog import resolve_key
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
    text = (resources.files("perfmodel.hardware") / "data" / LINKS_FILE).read_text(encoding="utf-8")
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


FIT_FILE = "collectives-fit.json"
#: a part without its own nccl-tests rows borrows a fitted part's parameters of the same link
#: generation (7-9% median from a same-generation donor in collectives-fit.json), else these
#: (12-36% median), always with its own link bandwidth
DONORS = {"nvlink": "h100-sxm", "pcie": "l40s"}
#: the scale-out plateau: nccl-tests #119, 24 A100s over 4 HDR NICs per 8 GPUs reach 84.8
#: GB/s bus bandwidth of the 100 GB/s per node (no multi-node sweep to fit)
SCALE_OUT_EFFICIENCY = 0.85


@functools.cache
def _fit_groups() -> dict:
    import json

    return json.loads((resources.files("perfmodel.hardware") / "data" / FIT_FILE).read_text(encoding="utf-8"))["groups"]


def _fitted(system: str) -> dict:
    """{(collective, algorithm): {gpus (0: all counts): parameters}} stored for ``system``."""
    out: dict = {}
    for name, group in _fit_groups().items():
        parts = name.split("/")
        if parts[0] != system:
            continue
        gpus = int(parts[3][2:]) if len(parts) > 3 else 0
        for alg, theta in group["parameters"].items():
            out.setdefault((parts[1], alg), {})[gpus] = dict(theta)
    if ("all_gather", "ring") in out:  # one hop each way: a 2-GPU all-gather's parameters
        out[("send_recv", "direct")] = {0: out[("all_gather", "ring")].get(2, out[("all_gather", "ring")].get(0))}
    return out


#: PCIe parts: the default fabric is a server whose GPUs sit behind non-blocking PCIe switches
#: with peer-to-peer on, each GPU on its own x16 link (links.csv's bandwidth). A ring's bus
#: bandwidth on such a tree does not fall with the GPU count (nccl-tests' busbw is defined so),
#: so every count takes the parameters fitted to the 2-GPU rows: the one L40S path in
#: nccl-measurements.csv that runs near link rate (all-reduce bus bandwidth 20.1 GB/s at
#: 512 MiB, of the 32 GB/s link). Nothing in TensorRT-LLM's L40S tables (v0.9 performance.md,
#: v0.10 perf-overview.md) names their server: this is the datasheet link, not a fit to those
#: rows. The measured aiconfigurator server itself (5.2 GB/s at 4 GPUs, 1.4 GB/s at 8: a tree
#: whose GPUs share one path or bounce through host memory) is ``fabric_for(key, "measured")``.
PCIE_PAIR_GPUS = 2
PCIE_TREES = ("switch", "measured")


@functools.cache
def fabric_for(key: str, pcie_tree: str = "switch"):
    """The :class:`perfmodel.collectives.Fabric` of a catalog key (None without a links row);
    ``pcie_tree`` ("switch" or "measured", PCIe parts only): see ``PCIE_PAIR_GPUS``."""
    from perfmodel.collectives import Fabric

    if pcie_tree not in PCIE_TREES:
        raise PerfmodelError(f"pcie_tree: {pcie_tree!r} is not one of {', '.join(PCIE_TREES)}")
    ic = interconnects().get(key)
    if ic is None or ic.scale_up.bandwidth_bytes_per_s is None:
        return None
    params, source = _fitted(key), f"{FIT_FILE}: fitted to this part's nccl-tests rows"
    if not params:
        same = [k for k, other in interconnects().items()
                if other.scale_up.generation == ic.scale_up.generation and _fitted(k)]
        donor = same[0] if same else DONORS.get(ic.scale_up.kind, "h100-sxm")
        params = {k: v for k, v in _fitted(donor).items() if ic.nvls or k[1] != "nvls"}
        source = f"{FIT_FILE}: borrowed from {donor} (no rows for this part) with its own link bandwidth"
    domain = max(ic.scale_up.domain_gpus or 1, *(g for by in params.values() for g in by))
    if ic.scale_up.kind == "pcie" and pcie_tree == "switch":
        params = {k: {0: by.get(PCIE_PAIR_GPUS) or by[0]} for k, by in params.items()}
        source += (f"; the {PCIE_PAIR_GPUS}-GPU parameters at every GPU count (non-blocking PCIe switch, "
                   "P2P: each GPU on its own link)")
    ring = params[("all_reduce", "ring")]
    ring = ring.get(0) or ring[max(ring)]
    out = ic.scale_out
    inter = (ring["t_c"], ring["alpha_c"], SCALE_OUT_EFFICIENCY, ring["X_ch"], ring["p_c"]) if out else None
    return Fabric(ic.scale_up.bandwidth_bytes_per_s, domain, out.bandwidth_bytes_per_s if out else None, params, inter,
                  {"intra_node": source, "inter_node": "latency and ramp of the intra-node ring all-reduce; plateau "
                   f"{SCALE_OUT_EFFICIENCY} of the NIC (nccl-tests #119, 24 A100s); no multi-node sweep was fitted"})
