"""The cost model's terms as data: ``data/cost-model.json`` (written by
:mod:`perfmodel.hardware.calibrate`) -> one :class:`perfmodel.cost.CostParams` per accelerator.

An accelerator's terms are, in order of precedence: its own fitted values (GEMM
measurements of that part), then the file's defaults (engine-level terms fitted to
the published end-to-end rows; datasheet figures), then the catalog row (the GEMM
plateau from MAMF / ``matmul_efficiency``, the streaming fraction from
``bandwidth_efficiency``). ``CostParams.sources`` names where each value came from.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources

from perfmodel.cost import CostParams
from perfmodel.errors import PerfmodelError

FILE = "cost-model.json"
#: the scalar terms a data file may give (the GEMM plateaus and the sources are read apart)
FIELDS = tuple(f.name for f in dataclasses.fields(CostParams)
               if f.name not in ("gemm_efficiency", "gemm_k_half_dtype", "sources"))


@functools.cache
def stored() -> dict:
    return json.loads((resources.files("perfmodel.hardware") / "data" / FILE).read_text(encoding="utf-8"))


def params_for(acc, data: dict | None = None) -> CostParams:
    """The cost-model terms of ``acc`` (a catalog Accelerator, or a user's with ``key``)."""
    data = stored() if data is None else data
    own = data.get("accelerators", {}).get(acc.key, {})
    defaults = data["defaults"]
    values, sources = {}, {}
    for name in FIELDS:
        for where, table in (("fitted for this part", own), ("default", defaults)):
            if name in table:
                values[name] = table[name]["value"]
                sources[name] = f"{where}: {table[name]['source']}"
                break
    vendor = data.get("vendors", {}).get(acc.vendor, {})
    for name, entry in vendor.items():
        if name not in own:
            values[name], sources[name] = entry["value"], f"{acc.vendor}: {entry['source']}"
    gemm, gemm_sources = {}, {}
    fallback = acc.matmul_efficiency
    if fallback is not None:
        gemm["bf16"], gemm_sources["bf16"] = fallback, f"catalog matmul_efficiency ({acc.efficiency_source.split(';')[0]})"
    fp8 = acc.extra.get("matmul_efficiency_fp8")
    if fp8 is not None:
        gemm["fp8"], gemm_sources["fp8"] = fp8, "catalog MAMF fp8 / dense fp8 peak"
    for dtype, entry in own.get("gemm_efficiency", {}).items():
        gemm[dtype], gemm_sources[dtype] = entry["value"], f"fitted for this part: {entry['source']}"
    if not gemm:
        entry = defaults["gemm_efficiency"]
        gemm["bf16"], gemm_sources["bf16"] = entry["value"], f"default: {entry['source']}"
    sources.update({f"gemm_efficiency[{k}]": v for k, v in gemm_sources.items()})
    ramps = {}
    for dtype, entry in own.get("gemm_k_half_dtype", {}).items():
        ramps[dtype] = entry["value"]
        sources[f"gemm_k_half_dtype[{dtype}]"] = f"fitted for this part: {entry['source']}"
    if "stream_efficiency" not in own and acc.bandwidth_efficiency is not None:
        values["stream_efficiency"] = acc.bandwidth_efficiency
        sources["stream_efficiency"] = "catalog bandwidth_efficiency"
    clock = own.get("clock_hz") or data.get("clocks", {}).get(acc.key)
    if clock:
        values["clock_hz"], sources["clock_hz"] = clock["value"], clock["source"]
    check = data.get("e2e_validation")
    if check:
        loso = check["leave_one_source_out"]
        sources["validation"] = (f"median |error| {loso['median_abs_error']:.0%} (p90 {loso['p90_abs_error']:.0%}) out of "
                                 f"sample over {check['rows']} published single-GPU engine runs ({check['sources']} sources)")
    try:
        return CostParams(gemm_efficiency=gemm, gemm_k_half_dtype=ramps, sources=sources, **values)
    except TypeError as exc:
        raise PerfmodelError(f"cost model data for {acc.name!r}: {exc}") from None


def with_overrides(params: CostParams, overrides, where: str) -> CostParams:
    """``params`` with a user file's ``cost`` mapping applied (field -> value; sources say so)."""
    if overrides is None:
        return params
    if not isinstance(overrides, dict):
        raise PerfmodelError(f"{where}: expected a mapping of cost-model fields, got {type(overrides).__name__}")
    known = {f.name for f in dataclasses.fields(CostParams)} - {"sources"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PerfmodelError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    sources = dict(params.sources)
    for name in overrides:
        sources[name] = "the accelerator file"
    try:
        return dataclasses.replace(params, sources=sources, **overrides)
    except (TypeError, ValueError) as exc:
        raise PerfmodelError(f"{where}: {exc}") from None
