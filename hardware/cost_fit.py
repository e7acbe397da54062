"""Fitting cost-model terms (:class:`perfmodel.cost.CostParams`) to measurements:
least squares on ``ln t`` (Levenberg–Marquardt, :func:`perfmodel.hardware.attention_fit.levenberg_marquardt`)
over named fields, each kept in its range by a transform (fractions: a sigmoid into
(0, 1); times, lengths and bytes: an exponential, > 0)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfmodel.cost import CostParams
from perfmodel.hardware.attention_fit import levenberg_marquardt

FRACTIONS = ("weight_stream_efficiency", "stream_efficiency", "attention_efficiency", "softmax_overlap", "attention_backward_fraction")


#: per-dtype fields, fitted as ``field.dtype`` (``gemm_efficiency.fp8``, ``gemm_k_half_dtype.fp8``)
PER_DTYPE = ("gemm_efficiency", "gemm_k_half_dtype")


def _get(params: CostParams, name: str) -> float:
    field, _, dtype = name.partition(".")
    if field in PER_DTYPE:
        return getattr(params, field).get(dtype, params.gemm_k_half if field == "gemm_k_half_dtype" else None)
    return getattr(params, name)


def _set(params: CostParams, values: dict) -> CostParams:
    maps = {f: dict(getattr(params, f)) for f in PER_DTYPE}
    plain = {}
    for name, v in values.items():
        field, _, dtype = name.partition(".")
        if field in PER_DTYPE:
            maps[field][dtype] = v
        else:
            plain[name] = v
    return replace(params, **maps, **plain)


def _is_fraction(name: str) -> bool:
    return name in FRACTIONS or name.startswith("gemm_efficiency.")


def _decode(u, names):
    u = np.clip(u, -40, 40)
    return {n: float(1 / (1 + np.exp(-x)) if _is_fraction(n) else np.exp(x)) for n, x in zip(names, u)}


def _encode(params, names):
    out = []
    for n in names:
        x = min(max(_get(params, n), 1e-12), 1 - 1e-9) if _is_fraction(n) else max(_get(params, n), 1e-15)
        out.append(np.log(x / (1 - x)) if _is_fraction(n) else np.log(x))
    return np.array(out)


def fit(predict, measured, base: CostParams, names: list[str], starts: list[dict] = ()) -> tuple[CostParams, float]:
    """``base`` with ``names`` fitted so ``predict(params)`` matches ``measured`` seconds in
    ``ln t``; returns the parameters and the RMS log error. ``starts``: extra starting points."""
    target = np.log(np.asarray(measured, float))

    def residual(u):
        with np.errstate(all="ignore"):
            r = np.log(predict(_set(base, _decode(u, names)))) - target
        return np.where(np.isfinite(r), r, 50.0)

    best = None
    for start in ({}, *starts):
        u, cost = levenberg_marquardt(residual, _encode(_set(base, start), names), iterations=100)
        if best is None or cost < best[1]:
            best = (u, cost)
    params = _set(base, _decode(best[0], names))
    return params, float(np.sqrt(best[1] / len(target)))
