"""The GEMM and memory terms of the cost model fitted to published GEMM measurements
(``data/gemm-measurements.csv``, copied unchanged; how each source was read is in
``data/gemm-measurements.md``).

Each row is one matrix product ``(M, N, K)`` (times ``batch``) in one dtype on one GPU
with its measured seconds (``time_us``, else ``2·M·N·K·batch / TFLOP/s``). The model is
:data:`perfmodel.cost.GEMM_TIME_S`; the fit is least squares on ``ln t`` over the
terms the rows determine: the plateau ``e_g`` per dtype, the ramp ``K_h`` (per dtype
where a dtype has enough rows), the
weight-streaming fraction ``e_w`` and the small-transfer bytes ``X_h`` (when rows with
``M ≤ 128`` exist) and the fixed ``t_k``. Sources are held out one at a time to give
the out-of-sample error. Grouped (MoE) GEMMs (:func:`grouped_rows`) carry their group
count ``G``; plain rows have ``G = 1``.
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
import pandas as pd

from perfmodel import symbols as S
from perfmodel.cost import GEMM_TIME_S, PARAMETERS
from perfmodel.evaluate import vectorised
from perfmodel.hardware.attention_fit import levenberg_marquardt

FILE = "gemm-measurements.csv"

#: published GPU label -> catalog key (H800 has the H100 SXM's SMs, clocks and HBM3)
GPU_KEYS = {
    "H100 SXM5 80GB": "h100-sxm", "H100 SXM": "h100-sxm", "sm_90 (Hopper; SKU not stated)": "h100-sxm",
    "H800 SXM5": "h100-sxm", "H800 SXM": "h100-sxm", "H200 SXM": "h200-sxm",
    "A100 SXM": "a100-80gb-sxm", "A100 (variant unstated)": "a100-80gb-sxm", "A100 SXM4 40GB (Modal)": "a100-40gb-sxm",
    "A100 80GB PCIe": "a100-80gb-pcie", "A100 PCIe": "a100-80gb-pcie",
    "B200 SXM": "b200", "B200 (Modal)": "b200", "GB200": "gb200", "B300 SXM": "b300",
    "MI300X": "mi300x", "MI325X": "mi325x", "Gaudi 2": "gaudi2", "Gaudi 3": "gaudi3",
}
#: fp16 and bf16 run at one tensor-core rate: one fitted plateau for both
DTYPES = {"bf16": "bf16", "fp16": "bf16", "fp8_e4m3": "fp8", "tf32": "tf32", "fp32": "fp32"}
#: bytes of the output element when the file leaves dtype_out blank
OUT_BYTES = {"bf16": 2, "fp16": 2, "fp8": 2, "tf32": 4, "fp32": 4}
IN_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "tf32": 4, "fp32": 4}
#: libraries left out of the fit, and why
EXCLUDED = {
    r"Triton.*tutorial": "timed with the Python launch (about 150 µs at every size): host-bound, not the kernel",
    "grouped": "grouped (MoE) GEMMs: kept out of the fit, scored out of sample by grouped_rows()",
}
#: grouped layouts the grouped formula (G groups of M/G rows) describes; ``m`` per the
#: file's convention (gemm-measurements.md): contiguous = total M, masked = M per group.
#: k-grouped rows (weight gradients: K split over groups) are a different product.
GROUPED = {"m-grouped contiguous": "total", "m-grouped masked": "per group"}
KEY = ["source", "library", "gpu", "dtype_a", "m", "n", "k", "batch", "layout", "notes"]


def read() -> pd.DataFrame:
    text = (resources.files("perfmodel.hardware") / "data" / FILE).read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text))


def _grouping(library: str):
    return next((how for layout, how in GROUPED.items() if layout in library), None)


def rows() -> pd.DataFrame:
    """One row per timed GEMM: accelerator, dtype, M, N, K, groups G, bytes, measured_s, source."""
    raw = read()
    for pattern in EXCLUDED:
        raw = raw[~raw["library"].str.contains(pattern, regex=True)]
    return _timed(raw)


def grouped_rows() -> pd.DataFrame:
    """The m-grouped (MoE) GEMMs in :func:`rows`' columns: ``M`` the total rows over the
    ``G`` groups, ``N×K`` each group's weight."""
    raw = read()
    return _timed(raw[raw["library"].map(_grouping).notna()])


def _timed(raw: pd.DataFrame) -> pd.DataFrame:
    raw = raw[raw["m"].notna() & raw["n"].notna() & raw["k"].notna() & raw["metric"].isin(["time_us", "tflops"])]
    raw = raw[raw["gpu"].isin(GPU_KEYS) & raw["dtype_a"].isin(DTYPES)]
    out = []
    for _, g in raw.groupby([c for c in KEY if c != "notes"], dropna=False, sort=False):
        r = g.iloc[0]
        batch = 1 if pd.isna(r["batch"]) else int(r["batch"])
        m, n, k = int(r["m"]), int(r["n"]), int(r["k"])
        grouping = _grouping(r["library"])
        # a batched GEMM is one of N·batch columns; a grouped one has batch groups of M/batch rows
        rows_total = m * (batch if grouping == "per group" else 1) if grouping else m * batch
        groups, columns = (batch, n) if grouping else (1, n * batch)
        timed = g[g["metric"] == "time_us"]
        if len(timed):
            seconds = float(timed["value"].iloc[0]) / 1e6
        else:
            seconds = 2 * rows_total * n * k / (float(g[g["metric"] == "tflops"]["value"].iloc[0]) * 1e12)
        dtype = DTYPES[r["dtype_a"]]
        out.append(dict(source=r["source"], library=r["library"], gpu=r["gpu"], accelerator=GPU_KEYS[r["gpu"]],
                        dtype=dtype, M=rows_total if grouping else m, N=columns, K=k, G=groups, batch=batch,
                        measured_s=seconds, weight_bytes=n * k * batch * IN_BYTES[dtype],
                        other_bytes=rows_total * (k * IN_BYTES[dtype] + n * OUT_BYTES[dtype])))
    return pd.DataFrame(out)


_ARGS = (S.M_g, S.N_g, S.K_g, S.G_g, S.F_m, S.X_w, S.X_o, S.R, S.R_v, S.BW, S.n_sm, S.T_n, S.T_lo, S.T_hi) + PARAMETERS


def predict(frame: pd.DataFrame, acc, params) -> np.ndarray:
    """Seconds of each row's GEMM under ``params`` (a CostParams) on ``acc``."""
    f = vectorised(GEMM_TIME_S.xreplace({S.F_v: 0, S.c_q: 0}), {}, _ARGS)
    out = np.empty(len(frame))
    for dtype, idx in frame.groupby("dtype").indices.items():
        sub = frame.iloc[idx]
        out[idx] = f(sub["M"].to_numpy(float), sub["N"].to_numpy(float), sub["K"].to_numpy(float),
                     sub["G"].to_numpy(float), 2.0 * sub["M"] * sub["N"] * sub["K"], sub["weight_bytes"].to_numpy(float),
                     sub["other_bytes"].to_numpy(float), float(acc.peak(dtype)), float(acc.vector_peak or 1),
                     float(acc.memory_bandwidth_bytes_per_s), acc.sm_count, params.tile_n, params.tile_m_min,
                     params.tile_m_max, *params.vector(dtype))
    return out
