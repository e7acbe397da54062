"""Write ``data/cost-model.json``: the cost model's terms fitted to the published
measurements the project ships, with their out-of-sample errors.

1. **GEMM terms per part** (:mod:`perfmodel.hardware.gemm_fit`): the plateau per dtype, the
   K ramp (a dtype with 20 or more rows gets its own: FP8) and the fixed time where the
   rows vary enough, the weight-streaming fraction and small-transfer bytes where rows
   with ``M ≤ 128`` exist. Parts on one die (H200 = H100's GH100) are fitted together.
   DeepGEMM's m-grouped (MoE) rows are never fitted: they score the grouped formula
   out of sample.
2. **Engine terms, shared by every part** (:mod:`perfmodel.hardware.e2e`): the fixed time per
   kernel, the per-step overhead (with and without CUDA graphs), attention's plateau,
   and the weight-streaming fraction of parts without GEMV rows, fitted to the
   single-GPU fixed-batch rows.
3. **Out of sample**: each end-to-end source is predicted by a fit to the others
   (leave-one-source-out); the held-out terms are stored so that
   ``perfmodel validate e2e`` reproduces them without refitting.
4. **The training step's sustained compute fraction per die** (:mod:`perfmodel.hardware.training_fit`),
   fitted to the published training runs on the terms above, with its leave-one-source-out
   values (``perfmodel validate training``); ``python -m perfmodel.hardware.training_fit``
   refits it alone.

Run ``python -m perfmodel.hardware.calibrate`` after changing the data or the model.
"""

from __future__ import annotations

import copy
import datetime
import json
from importlib import resources

import numpy as np

from perfmodel.hardware import e2e, gemm_fit
from perfmodel.hardware.cost_data import FILE, params_for, stored
from perfmodel.hardware.cost_fit import fit
from perfmodel.cost import FORMULAS
from perfmodel.evaluate import vectorised

#: reference clocks the dense peaks are computed at (hw-notes §2), for the SFU rate
CLOCKS = {
    "a100-40gb-sxm": (1.41e9, "hw-notes §2: A100 1410 MHz x 256 x 2 x 432 = 311.9 TF"),
    "a100-80gb-sxm": (1.41e9, "hw-notes §2: A100 1410 MHz x 256 x 2 x 432 = 311.9 TF"),
    "a100-80gb-pcie": (1.41e9, "hw-notes §2: A100 1410 MHz (same peaks as SXM)"),
    "h100-sxm": (1.83e9, "hw-notes §2 / FA3 paper App. C.1: 1830 MHz gives the 989.4 TF peak"),
    "h200-sxm": (1.83e9, "H200 has the H100 SXM's GH100 SMs and the same 989 TF dense peak (gpu-specs.csv)"),
    "rtx-4090": (2.52e9, "hw-notes §2: RTX 4090 spec boost 2520 MHz"),
    "l40s": (2.52e9, "NVIDIA L40S datasheet boost clock 2520 MHz"),
}
#: a part's GEMM fit is stored only when its rows agree with the model this well (RMS of
#: ln t; H100's 551 rows give 0.15, A100's 16 mixed-GPU rows 0.47)
MAX_GEMM_RMS = 0.25
ENGINE_FIELDS = ["gap_s", "step_s", "eager_step_s", "launch_s"]


def _entry(value, source):
    return {"value": float(value), "source": source}


#: parts whose GEMMs are fitted with another part's rows, and why: the same die, SMs,
#: clocks and tensor peaks (only the memory differs, and the model takes each part's own)
SAME_DIE = {"h200-sxm": ("h100-sxm", "H200 is the H100 SXM's GH100 (132 SMs, 989.5/1979 TF dense bf16/fp8, "
                         "gpu-specs.csv) with HBM3e")}


def _pooled_predict(frame, params):
    """Seconds of each row under ``params``, each row on its own part (pooled dies)."""
    from perfmodel.hardware.catalog import get_accelerator

    out = np.empty(len(frame))
    for key, idx in frame.groupby("accelerator").indices.items():
        out[idx] = gemm_fit.predict(frame.iloc[idx], get_accelerator(key), params)
    return out


#: rows of one dtype on one die before its GEMM plateau is fitted (see :func:`fit_gemms`)
MIN_DTYPE_ROWS = 3


def fit_gemms(data: dict) -> dict:
    """Per-part GEMM terms and their errors (in sample and leave-one-source-out); the
    m-grouped (MoE) rows are scored out of sample by the grouped formula."""
    from perfmodel.hardware.catalog import get_accelerator

    rows = gemm_fit.rows()
    rows = rows[rows["dtype"].isin(["bf16", "fp8"])]
    rows = rows.assign(die=rows["accelerator"].map(lambda k: SAME_DIE.get(k, (k,))[0]))
    grouped = gemm_fit.grouped_rows()
    grouped = grouped[grouped["dtype"].isin(["bf16", "fp8"])]
    report = {}
    for key, g in rows.groupby("die"):
        # a dtype's plateau is fitted from MIN_DTYPE_ROWS of its own or more: fitted to one
        # best-shape row (a MAMF search's winner) the ramp lifts the plateau above what that
        # best shape reached; with fewer rows the catalog's MAMF fraction stands
        counts = g["dtype"].value_counts()
        g = g[g["dtype"].isin(counts[counts >= MIN_DTYPE_ROWS].index)].reset_index(drop=True)
        acc = get_accelerator(key)
        if acc.sm_count is None or len(g) < 5:
            continue
        names = [f"gemm_efficiency.{d}" for d in sorted(g["dtype"].unique())]
        if len(g) >= 20:
            names += ["gemm_k_half", "kernel_s"]
        # a dtype with enough rows of its own gets its own K ramp (the 16-bit one stays the default)
        names += [f"gemm_k_half_dtype.{d}" for d, n in g["dtype"].value_counts().items() if d != "bf16" and n >= 20]
        if (g["M"] <= 128).sum() >= 5:
            names += ["weight_stream_efficiency", "stream_bytes_half"]
        base = params_for(acc, data)
        # several starts (the fit must not depend on the previous file's values): short and
        # long ramps, with and without a small-transfer penalty
        starts = [{"kernel_s": k, "gemm_k_half": kh, "stream_bytes_half": xh, **{n: kh for n in names if n.startswith("gemm_k_half_dtype.")}}
                  for k, kh in ((1e-5, 64.0), (1e-7, 1024.0)) for xh in (1e-3, 3e5)]
        params, rms = fit(lambda p: _pooled_predict(g, p), g["measured_s"], base, names, starts)
        err = _pooled_predict(g, params) / g["measured_s"].to_numpy() - 1
        loso = []
        for source in g["source"].unique():
            train, held = g[g["source"] != source].reset_index(drop=True), g[g["source"] == source].reset_index(drop=True)
            if len(train) < 5:
                continue
            p_out, _ = fit(lambda p: _pooled_predict(train, p), train["measured_s"], base, names, starts)
            loso.extend(_pooled_predict(held, p_out) / held["measured_s"].to_numpy() - 1)
        parts = sorted(g["accelerator"].unique())
        report[key] = {"rows": int(len(g)), "parts": parts, "rms_log_error": round(rms, 4),
                       "median_abs_error": round(float(np.median(np.abs(err))), 4),
                       "p90_abs_error": round(float(np.quantile(np.abs(err), 0.9)), 4),
                       "loso_rows": len(loso),
                       "loso_median_abs_error": round(float(np.median(np.abs(loso))), 4) if loso else None,
                       "loso_p90_abs_error": round(float(np.quantile(np.abs(loso), 0.9)), 4) if loso else None,
                       "stored": rms <= MAX_GEMM_RMS}
        by_dtype = {}
        for dtype, sub in g.assign(err=err).groupby("dtype"):
            by_dtype[dtype] = {"rows": int(len(sub)), "median_abs_error": round(float(sub["err"].abs().median()), 4)}
        report[key]["by_dtype"] = by_dtype
        held_grouped = grouped[grouped["accelerator"].isin(parts)].reset_index(drop=True)
        if len(held_grouped):
            t = held_grouped["measured_s"].to_numpy()
            as_grouped = _pooled_predict(held_grouped, params) / t - 1
            as_dense = _pooled_predict(held_grouped.assign(G=1), params) / t - 1
            report[key]["grouped_out_of_sample"] = {
                "rows": int(len(held_grouped)), "median_abs_error": round(float(np.median(np.abs(as_grouped))), 4),
                "p90_abs_error": round(float(np.quantile(np.abs(as_grouped), 0.9)), 4),
                "as_one_dense_gemm_median_abs_error": round(float(np.median(np.abs(as_dense))), 4)}
        if rms > MAX_GEMM_RMS:
            continue  # rows that disagree with each other: the catalog's MAMF plateau stands
        src = f"least squares on ln t over {len(g)} GEMMs of {g['source'].nunique()} sources (gemm-measurements.csv)"
        if len(parts) > 1:
            src += f", {' and '.join(parts)} pooled"
        own = {"gemm_efficiency": {}}
        for n in names:
            field, _, dtype = n.partition(".")
            if dtype:
                own.setdefault(field, {})[dtype] = _entry(getattr(params, field)[dtype], src)
            else:
                own[n] = _entry(getattr(params, n), src)
        for part in {key, *[k for k, (die, _) in SAME_DIE.items() if die == key]}:
            why = "" if part == key else f" (fitted on {key}'s die: {SAME_DIE[part][1]})"
            entry = json.loads(json.dumps(own))
            for n, e in entry.items():
                for v in (e.values() if n in ("gemm_efficiency", "gemm_k_half_dtype") else [e]):
                    v["source"] += why
            data["accelerators"].setdefault(part, {}).update(entry)
    return report


#: the kernel families an engine's fused attention is taken to match, best first per part
ATTENTION_FAMILIES = ("fa3", "fa2", "cudnn", "triton")


def _attention_features(frame, acc, params):
    """Per published forward call: the attention formula's inputs as numbers."""
    from perfmodel import symbols as S
    from perfmodel.cost import accelerator_terms, kernels
    from perfmodel.evaluate import value
    from perfmodel.hardware.published import PASS_FACTOR  # noqa: F401  (the source's FLOP convention)
    from perfmodel.hardware.attention_scoring import call_of

    feats = []
    for _, r in frame.iterrows():
        call = call_of(r)
        # a published attention call runs in its own dtype (FA3's FP8 forward at the FP8 rate)
        terms = {str(k): float(v) for k, v in accelerator_terms(acc, params, call.dtype, attention=call.dtype).items()}
        launches = [kernel for launch in call.kernels() for kernel in kernels(launch)]
        feats.append([{**{str(k): float(value(v, call.values)) for k, v in kernel.inputs.items()}, **terms,
                       "kind": kernel.kind} for kernel in launches])
    return feats


def _attention_predict(feats, params):
    with np.errstate(divide="ignore", invalid="ignore"):
        return _attention_seconds(feats, params)


def _attention_seconds(feats, params):
    from perfmodel import symbols as S
    from perfmodel.cost import ATTENTION_TIME_S

    args = (S.F_m, S.F_v, S.N_x, S.X_o, S.N_g, S.R_a, S.R_v, S.R_x, S.BW, S.X_h, S.e_m, S.e_a, S.k_h, S.o_x, S.t_k)
    f = vectorised(ATTENTION_TIME_S, {}, args)
    out = np.zeros(len(feats))
    for launch in range(max(len(x) for x in feats)):
        cols = [np.array([x[launch].get(str(a), 0.0) if launch < len(x) else 0.0 for x in feats]) for a in args[:9]]
        live = np.array([launch < len(x) for x in feats])
        backward = np.array([launch < len(x) and x[launch]["kind"] == "attention_backward" for x in feats])
        plateau = params.attention_efficiency * np.where(backward, params.attention_backward_fraction, 1.0)
        t = f(*cols, params.stream_bytes_half, params.stream_efficiency, plateau,
              params.attention_k_half, params.softmax_overlap, 0.0)
        out += np.where(live, t, 0.0)
    return out


def fit_attention(data: dict) -> dict:
    """Per part: attention's plateau, keys-per-query ramp and softmax overlap, fitted to the
    published forward (and fwd+bwd) prefill calls of the best kernel family measured on it
    (highest plateau). The backward's fraction of the forward plateau is fitted first,
    where one family's rows hold both passes on one part, and taken by every part."""
    from perfmodel.hardware import published
    from perfmodel.hardware.catalog import get_accelerator

    rows = published.predicted()
    rows = rows[rows["scored"] & (rows["regime"] == "prefill") & rows["pass"].isin(["fwd", "fwd_bwd"]) & (rows["impl"] == "fused")
                & rows["family"].isin(ATTENTION_FAMILIES) & rows["dtype"].isin(["bf16", "fp16"])]
    names = ["attention_efficiency", "attention_k_half", "softmax_overlap"]
    both = [(len(sub), key, family, sub) for (key, family), sub in rows.groupby(["accelerator", "family"])
            if set(sub["pass"]) >= {"fwd", "fwd_bwd"}]
    backward = None
    if both:
        n, key, family, sub = max(both, key=lambda x: x[0])
        acc = get_accelerator(key)
        base = params_for(acc, data)
        feats = _attention_features(sub, acc, base)
        params, _ = fit(lambda p: _attention_predict(feats, p), sub["measured_s"], base, names + ["attention_backward_fraction"])
        backward = (key, family, n)
        data["defaults"]["attention_backward_fraction"] = _entry(
            params.attention_backward_fraction, f"{family} on {key}: its {n} forward and forward+backward calls fitted "
            "together (the only part and kernel with both), taken by every part")
    report = {}
    for key, g in rows.groupby("accelerator"):
        acc = get_accelerator(key)
        base = params_for(acc, data)
        results = []
        for family, sub in g.groupby("family"):
            feats = _attention_features(sub, acc, base)
            params, rms = fit(lambda p: _attention_predict(feats, p), sub["measured_s"], base, names)
            err = _attention_predict(feats, params) / sub["measured_s"].to_numpy() - 1
            pure_err = sub["predicted_s"].to_numpy() / sub["measured_s"].to_numpy() - 1
            results.append((params.attention_efficiency, family, params, err, pure_err, sub))
        _, family, params, err, pure_err, sub = max(results, key=lambda r: r[0])
        src = (f"least squares on ln t over {len(sub)} published {family} calls ({', '.join(sorted(set(sub['pass'])))}; "
               f"{sub['study'].nunique()} sources, attention-measurements*.csv)")
        data["accelerators"].setdefault(key, {}).update(
            attention_efficiency=_entry(params.attention_efficiency, src),
            attention_k_half=_entry(params.attention_k_half, src), softmax_overlap=_entry(params.softmax_overlap, src))
        report[key] = {"family": family, "rows": int(len(sub)), "median_abs_error": round(float(np.median(np.abs(err))), 4),
                       "p90_abs_error": round(float(np.quantile(np.abs(err), 0.9)), 4),
                       "pure_roofline_median_abs_error": round(float(np.median(np.abs(pure_err))), 4)}
    if backward:
        report["backward_fraction"] = {"from": f"{backward[1]}@{backward[0]}", "rows": backward[2],
                                       "value": round(data["defaults"]["attention_backward_fraction"]["value"], 4)}
    return report


def attention_out_of_sample(data: dict) -> dict:
    """The stored attention terms on published calls they were not fitted to (FA3
    backward, FP8 forward, other fwd+bwd, decode), beside the pure roofline and the
    previous per-group efficiency model (``efficiency-fit.json``) on the same rows."""
    from perfmodel.hardware import published
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.hardware.attention_fit import load_fit
    from perfmodel.hardware.attention_scoring import calibrate as old_model

    rows = published.predicted()
    rows = rows[rows["scored"] & (rows["impl"] == "fused") & rows["family"].isin(ATTENTION_FAMILIES)]
    fitted = rows["regime"].eq("prefill") & rows["pass"].isin(["fwd", "fwd_bwd"]) & rows["dtype"].isin(["bf16", "fp16"])
    unseen = rows[~fitted & rows["accelerator"].isin(data["accelerators"])]
    old = old_model(unseen, load_fit(), published.accelerators(unseen))
    report = {}
    for (key, family, pass_, dtype), sub in unseen.groupby(["accelerator", "family", "pass", "dtype"]):
        acc = get_accelerator(key)
        params = params_for(acc, data)
        new = _attention_predict(_attention_features(sub, acc, params), params) / sub["measured_s"].to_numpy() - 1
        prev = old.loc[sub.index, "calibrated_error"].to_numpy()
        pure = sub["predicted_s"].to_numpy() / sub["measured_s"].to_numpy() - 1
        report[f"{family} {pass_} {dtype} @{key}"] = {
            "rows": int(len(sub)), "cost_model_median_abs_error": round(float(np.median(np.abs(new))), 4),
            "previous_model_median_abs_error": round(float(np.median(np.abs(prev))), 4),
            "pure_roofline_median_abs_error": round(float(np.median(np.abs(pure))), 4)}
    return report


#: defaults for parts without their own measurements: (field, donor part, why that donor)
TRANSFERS = (
    ("weight_stream_efficiency", "h100-sxm", "the only part with GEMV (M <= 128) GEMM measurements"),
    ("stream_bytes_half", "h100-sxm", "the only part with GEMV (M <= 128) GEMM measurements"),
    ("gemm_k_half", "h100-sxm", "the only part with GEMMs over enough K to fit the ramp"),
    ("kernel_s", "h100-sxm", "the only part whose GEMM timings span 8 us to 10 ms"),
    ("attention_efficiency", "a100-80gb-sxm", "FlashAttention-2's schedule, the kernel every engine has"),
    ("attention_k_half", "a100-80gb-sxm", "FlashAttention-2's schedule, the kernel every engine has"),
    ("softmax_overlap", "a100-80gb-sxm", "FlashAttention-2's schedule, the kernel every engine has"),
)
FIXED_DEFAULTS = {
    "dequant_ops_per_weight": (4.0, "not fitted (no published prefill of a weight-only kernel in the data): 4 vector "
                               "operations per weight, the dequantize loop of GPTQ/AWQ-style kernels: unpack (shift and "
                               "mask), integer to fp16 convert, subtract the zero point, multiply by the group scale"),
    "gemm_efficiency": (0.75, "hw-notes §4: large BF16 GEMMs reach 0.75-0.80 of the dense peak on H100/H200; low end "
                        "taken for parts with neither a MAMF measurement nor a catalog matmul_efficiency"),
    "stream_efficiency": (0.90, "hw-notes §4: large streaming kernels reach 0.85-0.92 of nominal HBM bandwidth "
                          "(catalog bandwidth_efficiency where the part has one)"),
}


def _transfer_defaults(data: dict) -> None:
    """Defaults for parts without their own fit: a donor part's fitted values, each with why."""
    for name, (v, why) in FIXED_DEFAULTS.items():
        data["defaults"][name] = _entry(v, why)
    for name, donor, why in TRANSFERS:
        own = data["accelerators"].get(donor, {})
        if name in own:
            data["defaults"][name] = _entry(own[name]["value"], f"{donor}'s fit ({why}), taken for parts without their own")



def _with_defaults(data: dict, values: dict, source: str) -> dict:
    out = copy.deepcopy(data)
    for name, v in values.items():
        out["defaults"][name] = _entry(v, source)
    return out


def fit_engine(data: dict, rows, prepared) -> tuple[dict, float]:
    """The engine-level defaults fitted to ``prepared`` rows (see module docstring)."""
    from perfmodel.hardware.catalog import get_accelerator

    accs = {key: get_accelerator(key) for key, _ in prepared}
    measured = np.array([e2e.measured_value(r) for _, r in rows.iterrows()])
    rate = rows["metric"].str.contains("tokens_per_s").to_numpy()
    target = np.where(rate, 1 / measured, measured)  # fit on times

    def predict(params):
        current = _with_defaults(data, {n: getattr(params, n) for n in ENGINE_FIELDS}, "trial")
        per = {k: params_for(a, current) for k, a in accs.items()}
        out = np.array([f(per[k]) for k, f in prepared])
        return np.where(rate, 1 / out, out)

    base = params_for(accs[prepared[0][0]], data)
    params, rms = fit(predict, target, base, ENGINE_FIELDS, [{"gap_s": 1e-5, "step_s": 1e-3}])
    return {n: getattr(params, n) for n in ENGINE_FIELDS}, rms


def _write(path, data) -> None:
    with open(str(path), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")


def e2e_summary() -> dict:
    """Errors of the stored model over every scored end-to-end row (the figures
    ``perfmodel request`` quotes beside its prediction)."""
    frame = e2e.scored(out_of_sample=True)
    frame = frame[frame["gpus"] == 1]
    out = {"rows": int(len(frame)), "sources": int(frame["source"].nunique())}
    for name, col in (("roofline", "roofline_error"), ("flat", "flat_error"), ("calibrated", "predicted_error"),
                      ("leave_one_source_out", "loso_error")):
        err = frame[col].dropna().abs()
        out[name] = {"median_abs_error": round(float(err.median()), 4), "p90_abs_error": round(float(err.quantile(0.9)), 4)}
    return out


def main() -> None:
    data = copy.deepcopy(stored())
    data["clocks"] = {k: _entry(v, s) for k, (v, s) in CLOCKS.items()}
    data["accelerators"] = {}
    # a dtype's own K ramp is a part's (H100's FP8 ramp is not Blackwell's or Ada's tensor
    # cores): parts without one take their 16-bit ramp
    data["defaults"].pop("gemm_k_half_dtype", None)
    gemm_report = fit_gemms(data)
    attention_report = fit_attention(data)
    attention_unseen = attention_out_of_sample(data)
    _transfer_defaults(data)
    all_rows = e2e.rows()
    rows = e2e.single_gpu(all_rows)
    prepared = e2e.prepare(all_rows)
    values, rms = fit_engine(data, rows, prepared)
    src = f"fitted to {len(rows)} single-GPU fixed-batch rows of e2e-measurements.csv ({rows['source'].nunique()} sources)"
    data = _with_defaults(data, values, src)
    loso = {}
    for source in rows["source"].unique():
        keep = (rows["source"] != source).to_numpy()
        held_values, _ = fit_engine(data, rows[keep], [p for p, k in zip(prepared, keep) if k])
        loso[source] = held_values
    data["leave_one_source_out"] = loso
    path = resources.files("perfmodel.hardware") / "data" / FILE
    _write(path, data)
    from perfmodel.hardware import catalog

    stored.cache_clear()
    catalog._load.cache_clear()  # the catalog's accelerators carry the terms just written
    data["e2e_validation"] = e2e_summary()
    from perfmodel.hardware import training_fit

    data = training_fit.apply(data)  # the training step's sustained fractions, on the terms just written
    data["formula"] = {k: str(v) for k, v in FORMULAS.items()}
    data["method"] = __doc__.strip().splitlines()[0] + " " + " ".join(l.strip() for l in __doc__.strip().splitlines()[1:] if l.strip())
    data["date"] = datetime.date.today().isoformat()
    data["gemm_fit"] = gemm_report
    data["attention_fit"] = attention_report
    data["attention_out_of_sample"] = attention_unseen
    data["engine_fit_rms_log_error"] = round(rms, 4)
    _write(path, data)
    print(json.dumps({"gemm": gemm_report, "attention": attention_report, "engine": values, "rms": rms}, indent=1))


if __name__ == "__main__":
    main()
