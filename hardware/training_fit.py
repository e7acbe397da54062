"""The sustained compute fraction of a training step (``CostParams.train_compute_fraction``,
the symbol ``eta_t``), fitted per die to the published training runs that ``perfmodel
validate training --published`` scores, with its leave-one-source-out values.

Why a fitted term: every other term of the cost model is fitted to kernels and
collectives timed alone. Composed into a multi-GPU training step those kernels predict
published runs 7–15% too fast on A100, ~20% on H100 and ~30% on Blackwell, across model
sizes, layouts and precisions. Kernels timed alone run at the clock a short benchmark
holds; a step holds the power-limited clock, shares the SMs with the collectives it
overlaps, and adds the framework's work between kernels. None of this is measured in
the project's data, so one fraction per die scales the compute rates (R, R_a, R_v, R_x;
memory and link bandwidths unchanged) and is fitted to the runs: least absolute deviation
of ln(time) over the die's rows (golden-section search over ``eta`` in [0.3, 1]). Absolute,
not squared: a few runs hold what the model does not represent (DeepSpeed ZeRO-3 of 2021
runs 3-5x slower than any overlap of its gathers; one Megatron-Bridge release's Qwen3 rows
differ 1.7x from the next's), and a squared loss would let them set every die's fraction.

Out of sample: each study's rows are predicted with fractions fitted without that study
(the tables of one paper are one study); a die left without rows takes the fraction
pooled over every remaining row. ``validate training`` reports both errors.
"""

from __future__ import annotations

import math
import re

import numpy as np

from perfmodel.errors import PerfmodelError

LOW, HIGH = 0.3, 1.0


def die(part: str) -> str:
    """The die a part is fitted on: the GEMM fit's pooling (H200 is the H100's GH100)."""
    from perfmodel.hardware.calibrate import SAME_DIE

    return SAME_DIE.get(part, (part,))[0]


def source_group(study: str) -> str:
    """The leave-one-source-out unit: a study, its tables together."""
    return re.sub(r" Table \d+$", "", study)


def golden(cost, low: float = LOW, high: float = HIGH, tol: float = 1e-4) -> float:
    """The minimum of a unimodal ``cost`` on [low, high] by golden-section search."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = cost(c), cost(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = cost(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = cost(d)
    return (a + b) / 2


def fit_fraction(rows: list) -> float:
    """``eta`` minimising Σ |ln(predicted/measured time)| over ``rows``: (time_at(eta),
    measured time) pairs, ``time_at`` a function of the fraction."""
    def cost(eta):
        return sum(abs(math.log(time_at(eta) / measured)) for time_at, measured in rows)

    return golden(cost)


def fit(frame) -> dict:
    """Per die and pooled fractions, in sample and leave-one-source-out, from the scored
    rows of ``frame`` (``training_validation.fit_inputs``: ``time_at``, ``measured_time``,
    ``accelerator``, ``study``)."""
    frame = frame.assign(die=frame["accelerator"].map(die), group=frame["study"].map(source_group))

    def fractions(sub):
        out = {d: fit_fraction(list(zip(g["time_at"], g["measured_time"]))) for d, g in sub.groupby("die")}
        out["pooled"] = fit_fraction(list(zip(sub["time_at"], sub["measured_time"])))
        return out

    if frame.empty:
        raise PerfmodelError("training fit: no scored rows")
    in_sample = fractions(frame)
    loso = {group: fractions(frame[frame["group"] != group]) for group in sorted(frame["group"].unique())}
    summary = {}
    for d, g in frame.groupby("die"):
        eta = in_sample[d]
        err = np.array([t(eta) / m - 1 for t, m in zip(g["time_at"], g["measured_time"])])
        summary[d] = {"rows": int(len(g)), "sources": sorted(g["group"].unique()), "value": round(eta, 4),
                      "median_abs_error": round(float(np.median(np.abs(err))), 4)}
    return {"in_sample": in_sample, "leave_one_source_out": loso, "by_die": summary}


def loso_fraction(loso: dict, group: str, part: str) -> float | None:
    """The fraction a row of ``group`` on ``part`` is predicted with out of sample (None: the
    stored fit never saw the study, so its stored fractions are already out of sample)."""
    held = loso.get(source_group(group))
    if held is None:
        return None
    return held.get(die(part), held["pooled"])


def apply(data: dict) -> dict:
    """Fit the fractions to the published rows and put them into ``data`` (the contents of
    ``cost-model.json``): each fitted die's parts, the pooled value as the default for every
    other part, and the leave-one-source-out values ``validate training`` reads."""
    from perfmodel.hardware import training_validation
    from perfmodel.hardware.calibrate import SAME_DIE

    frame = training_validation.fit_inputs()
    result = fit(frame)
    n, groups = len(frame), frame["study"].map(source_group).nunique()
    for d, summary in result["by_die"].items():
        src = (f"fitted to {summary['rows']} published training runs on this die ({', '.join(summary['sources'])}): "
               f"least absolute deviation of ln(iteration time), hardware/training_fit.py")
        for part in {d, *[p for p in SAME_DIE if die(p) == d]}:
            data["accelerators"].setdefault(part, {})["train_compute_fraction"] = {"value": result["in_sample"][d],
                                                                                 "source": src}
    data["defaults"]["train_compute_fraction"] = {
        "value": result["in_sample"]["pooled"],
        "source": f"pooled over {n} published training runs of {groups} sources (every fitted die), taken by parts "
                  "without runs of their own"}
    data["training_fit"] = {"rows": n, "sources": groups, "by_die": result["by_die"],
                            "pooled": round(result["in_sample"]["pooled"], 4),
                            "leave_one_source_out": result["leave_one_source_out"]}
    return data


def main() -> None:
    """Refit the training fractions into the stored ``cost-model.json`` (the other terms as
    they are; ``python -m perfmodel.hardware.calibrate`` runs this too)."""
    import json
    from importlib import resources

    from perfmodel.hardware import catalog, cost_data
    from perfmodel.hardware.calibrate import _write

    path = resources.files("perfmodel.hardware") / "data" / cost_data.FILE
    data = apply(json.loads(path.read_text(encoding="utf-8")))
    _write(path, data)
    cost_data.stored.cache_clear()
    catalog._load.cache_clear()
    print(json.dumps(data["training_fit"]["by_die"], indent=1), "pooled", data["training_fit"]["pooled"])


if __name__ == "__main__":
    main()
