"""Score the attention model against measurements: pure roofline, catalog efficiencies
and the calibrated model (:mod:`perfmodel.efficiency`), in and out of sample.

Rows are measurements of one attention call each (published, or timed by
``perfmodel.hardware.attention_bench``), with columns ``accelerator`` (a key of the
``accelerators`` mapping), ``family``, ``regime`` (prefill or decode), ``impl``,
``batch heads kv_heads head_dim seq_q seq_kv causal dtype pass`` and ``measured_s``.
Error is ``predicted / measured − 1`` (signed: negative = the model is too fast);
summaries give the median and 90th percentile of ``|error|``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from perfmodel.hardware.attention_fit import fit_group, today
from perfmodel.efficiency import Fit, KernelEfficiency, features, group_key
from perfmodel.kernels import AttentionCall, predict


def call_of(row: Mapping) -> AttentionCall:
    """The model's call for one row (causal count by default the FlashAttention ``half``)."""
    return AttentionCall(int(row["batch"]), int(row["heads"]), int(row["kv_heads"]), int(row["head_dim"]),
                         int(row["seq_q"]), int(row["seq_kv"]), bool(row["causal"]), row["dtype"], row["pass"],
                         row.get("causal_count", "half"), row.get("impl", "fused"), row.get("window"))


def predict_rows(rows: pd.DataFrame, accelerators: Mapping) -> pd.DataFrame:
    """``rows`` with the model beside each: the pure roofline (``predicted_s``, ``bound``,
    ``error``), catalog efficiencies (``expected_s``, what ``perfmodel attention``
    shows) and the calibrated model's inputs (``group``, ``_features``). Rows whose
    ``scored`` is False are kept, unpredicted."""
    out = rows.copy()
    scored = out["scored"] if "scored" in out else pd.Series(True, index=out.index)
    cols = {c: [] for c in ("flops", "bytes", "predicted_s", "bound", "expected_s", "group", "_features")}
    for r, ok in zip(out.to_dict("records"), scored):
        values = dict.fromkeys(cols)
        if ok:
            acc, call = accelerators[r["accelerator"]], call_of(r)
            pure = predict(call, acc)
            feats = features(call, acc, pure)
            group = group_key(r["family"], r["regime"], acc.key or acc.name)
            # the catalog defaults give exactly predict(call, acc, Efficiency.catalog_default(acc))
            values.update(flops=pure["flops"], bytes=pure["bytes"], predicted_s=pure["predicted_s"], bound=pure["bound"],
                          expected_s=KernelEfficiency.defaults(group, acc).time(feats), group=group, _features=feats)
        for c in cols:
            cols[c].append(values[c])
    for c, v in cols.items():
        out[c] = v
    out[["flops", "bytes", "predicted_s", "expected_s"]] = out[["flops", "bytes", "predicted_s", "expected_s"]].astype(float)
    out["predicted_tflops_per_s"] = out["flops"] / out["predicted_s"] / 1e12
    if "measured_s" in out:
        out["measured_s"] = out["measured_s"].astype(float)
        out["error"] = out["predicted_s"] / out["measured_s"] - 1
        out["expected_error"] = out["expected_s"] / out["measured_s"] - 1
        out["measured_tflops_per_s"] = out["flops"] / out["measured_s"] / 1e12
    return out


def calibrate(rows: pd.DataFrame, fit: Fit, accelerators: Mapping) -> pd.DataFrame:
    """Predicted rows plus the calibrated model: ``calibrated_s``, ``calibrated_error``,
    ``in_fit`` (whether the row's group has fitted parameters; if not, the catalog
    defaults predict it)."""
    out = rows.copy()
    times, seen = [], []
    for r in out.to_dict("records"):
        if r["_features"] is None:
            times.append(np.nan)
            seen.append(False)
            continue
        params = fit.groups.get(r["group"])
        times.append((params or KernelEfficiency.defaults(r["group"], accelerators[r["accelerator"]])).time(r["_features"]))
        seen.append(params is not None)
    out["calibrated_s"], out["in_fit"] = times, seen
    if "measured_s" in out:
        out["calibrated_error"] = out["calibrated_s"] / out["measured_s"] - 1
    return out


def fit_rows(rows: pd.DataFrame, accelerators: Mapping, *, trained_on=(), notes: str = "") -> Fit:
    """Fit every group (``family/regime@accelerator``) present in scored, predicted rows."""
    groups = {}
    usable = rows[rows["predicted_s"].notna() & rows["measured_s"].notna()]
    for group, sub in usable.groupby("group", sort=True):
        sources = sub["source"] if "source" in sub else ()
        groups[group] = fit_group(group, list(sub["_features"]), sub["measured_s"],
                                  accelerators[sub["accelerator"].iloc[0]], sources)
    return Fit(groups, tuple(trained_on), today(), notes)


def leave_one_out(rows: pd.DataFrame, accelerators: Mapping, by: str = "source") -> pd.DataFrame:
    """Out-of-sample predictions: each ``by`` value's rows predicted by a fit to all other
    rows. Adds ``loso_s``, ``loso_error`` and ``loso_seen`` (whether the row's group had
    training rows; if not, the catalog defaults predicted it)."""
    out = rows.copy()
    out["loso_s"], out["loso_seen"] = np.nan, False
    usable = out["predicted_s"].notna() & out["measured_s"].notna()
    for value in out.loc[usable, by].unique():
        held = usable & (out[by] == value)
        fit = fit_rows(out[usable & ~held], accelerators)
        for i in out.index[held]:
            r = out.loc[i]
            params = fit.groups.get(r["group"])
            acc = accelerators[r["accelerator"]]
            out.loc[i, "loso_s"] = (params or KernelEfficiency.defaults(r["group"], acc)).time(r["_features"])
            out.loc[i, "loso_seen"] = params is not None
    out["loso_error"] = out["loso_s"] / out["measured_s"] - 1
    return out


def transfer(rows: pd.DataFrame, fit: Fit, source_group: str, target_group: str) -> pd.DataFrame:
    """The ``target_group`` rows predicted with ``source_group``'s parameters (e.g. FA2 on
    A100 applied to FA3 on H100: one kernel generation's fractions on the next)."""
    params = fit.groups[source_group]
    sub = rows[rows["group"] == target_group].copy()
    sub["transfer_s"] = [params.time(f) for f in sub["_features"]]
    sub["transfer_error"] = sub["transfer_s"] / sub["measured_s"] - 1
    return sub


def _p90(x: pd.Series) -> float:
    x = x.dropna().abs()
    return float(x.quantile(0.9)) if len(x) else np.nan


def _median(x: pd.Series) -> float:
    x = x.dropna().abs()
    return float(x.median()) if len(x) else np.nan


def summarize(rows: pd.DataFrame, by: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Median and 90th-percentile ``|error|`` per group of ``by`` (all rows when empty),
    for each predictor present: pure roofline, catalog efficiencies, calibrated, and
    leave-one-source-out (``loso``; ``loso_seen_rows`` had their group in training)."""
    scored = rows[rows["error"].notna()]
    keys = list(by) or [lambda _: "all"]
    aggs = {"rows": ("error", "size"), "median_abs_error": ("error", _median), "p90_abs_error": ("error", _p90),
            "median_error": ("error", "median")}
    for name in ("expected", "calibrated", "loso", "transfer"):
        if f"{name}_error" in scored:
            aggs[f"{name}_median_abs_error"] = (f"{name}_error", _median)
            aggs[f"{name}_p90_abs_error"] = (f"{name}_error", _p90)
    if "loso_seen" in scored:
        aggs["loso_seen_rows"] = ("loso_seen", "sum")
    frame = scored.groupby(keys, dropna=False, sort=True).agg(**aggs).reset_index()
    if not by:
        frame = frame.rename(columns={"index": "group"}).assign(group="all")
    return frame


#: columns shown first in row output (those present), the rest follow in their order
FIRST = ("study", "gpu", "kernel", "device_name", "backend", "phase", "pass", "dtype", "batch", "heads", "kv_heads",
         "head_dim", "seq_q", "seq_kv", "causal", "measured_s", "predicted_s", "error", "bound", "expected_s",
         "expected_error", "calibrated_s", "calibrated_error", "in_fit", "loso_s", "loso_error", "loso_seen", "group")


def public(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows for export: the key columns first, internal (``_``) columns dropped."""
    first = [c for c in FIRST if c in rows]
    rest = [c for c in rows.columns if c not in first and not c.startswith("_")]
    return rows[first + rest]


def plot(rows: pd.DataFrame, path) -> None:
    """Two panels: measured vs predicted seconds (log-log, with y = x), and achieved
    TFLOP/s against the KV length per head dim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows[rows["error"].notna()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    left.scatter(data["measured_s"], data["predicted_s"], s=12, label="pure roofline", alpha=0.7)
    if "in_fit" in data and data["in_fit"].any():  # calibrated where a fitted group exists
        fitted = data[data["in_fit"].astype(bool)]
        left.scatter(fitted["measured_s"], fitted["calibrated_s"], s=12, marker="x", label="calibrated", alpha=0.7)
    lo = min(data["measured_s"].min(), data["predicted_s"].min())
    hi = max(data["measured_s"].max(), data["predicted_s"].max())
    left.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    left.set(xscale="log", yscale="log", xlabel="measured s", ylabel="predicted s", title="attention calls")
    left.legend()
    for d, sub in data.groupby("head_dim"):
        sub = sub.sort_values("seq_kv")
        right.scatter(sub["seq_kv"], sub["measured_tflops_per_s"], s=12, label=f"head dim {d}")
    right.set(xscale="log", xlabel="KV length (tokens)", ylabel="achieved TFLOP/s (FlashAttention count)",
              title="achieved rate")
    right.legend()
    fig.tight_layout()
    from perfmodel.files import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp))  # no half-made chart on failure
    plt.close(fig)
