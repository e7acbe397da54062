"""The request model against every stored published end-to-end run
(hardware/data/e2e-measurements.csv): measured on real engines by their authors,
independent of this code. Thresholds are stated from the stored fit
(hardware/data/cost-model.json) with room for a refit, and the issue's target."""

import numpy as np
import pytest

from perfmodel.hardware import e2e


@pytest.fixture(scope="module")
def scored_all():
    return e2e.scored(out_of_sample=True)


@pytest.fixture(scope="module")
def frame(scored_all):
    """The one-GPU rows (the cost model's engine terms are fitted to these)."""
    return scored_all[scored_all["gpus"] == 1]


@pytest.fixture(scope="module")
def parallel(scored_all):
    """The multi-GPU fixed-batch rows, on their tp x pp layouts: in no fit."""
    return scored_all[scored_all["gpus"] > 1]


def test_tensor_parallel_rows(parallel):
    # 157 rows: TensorRT-LLM 0.5/0.6.1/0.9 static tables, LMDeploy TP, gpt-fast TP.
    # Stored run (leave one source out): median |error| 13.4%, p90 52% (A100 10.1%, L40S
    # 17.0%, all but L40S 13.1%; was 16.8% / 84% with L40S at 120% when its all-reduce took
    # a PCIe server's 8-GPU tree, 1.4 GB/s, instead of the link behind a switch).
    # Left: Falcon-180B and Mixtral on H100/H200 too fast (TensorRT-LLM 0.9's kernels),
    # gpt-fast on small models too slow (its per-step cost is below the shared engine fit).
    assert len(parallel) >= 150 and set(parallel["layout"]) >= {"tp=2", "tp=4", "tp=8"}
    err = parallel["loso_error"].abs()
    assert err.median() <= 0.15 and err.quantile(0.9) <= 0.60
    assert parallel.loc[parallel["accelerator"] == "a100-80gb-sxm", "loso_error"].abs().median() <= 0.13
    assert parallel.loc[parallel["accelerator"] != "l40s", "loso_error"].abs().median() <= 0.16
    assert parallel.loc[parallel["accelerator"] == "l40s", "loso_error"].abs().median() <= 0.20
    assert parallel["roofline"].isna().all()  # the roofline and flat predictors are one-GPU only


def test_every_unscored_row_says_why():
    rows = e2e.rows()
    assert rows["scored"].sum() >= 180
    assert (rows.loc[~rows["scored"], "reason"].str.len() > 0).all()
    assert (rows.loc[rows["scored"], "reason"] == "").all()


def test_out_of_sample_median_within_the_target(frame):
    # The target is a leave-one-source-out median |error| of at most 15% on the
    # fixed-batch rows; the stored fit gives 10.9% (p90 35.9%; was 12.9% / 36%).
    loso = frame["loso_error"].dropna().abs()
    assert len(loso) == len(frame)
    assert loso.median() <= 0.13
    assert loso.quantile(0.9) <= 0.42


def test_calibrated_beats_the_roofline_and_the_flat_model(frame):
    # pure roofline about 32% median, flat efficiencies about 24%: the calibrated model
    # must be better than both in and out of sample
    med = {c: frame[c].abs().median() for c in ("roofline_error", "flat_error", "predicted_error", "loso_error")}
    assert med["loso_error"] < med["flat_error"] < med["roofline_error"]
    assert med["predicted_error"] < 0.5 * med["roofline_error"]


def test_the_roofline_is_a_bound(frame):
    """No engine beats the pure roofline, except LMDeploy's P50 per-token latency at
    batch >= 32 with 2k prompts: 47 ms on four different configurations, below the time
    the weights and KV cache take to read (the P50 of the per-token latencies is not the
    mean decode step there)."""
    faster = frame[frame["roofline_error"] > 0]
    assert ((faster["study"] == "InternLM/lmdeploy") & (faster["metric"] == "tpot_ms") & (faster["batch"] >= 32)
            & (faster["value"] == 47)).all()
    assert len(faster) <= 4


def test_summary_groups(frame):
    table = e2e.summarize(frame, ["study"])
    assert set(table["study"]) == set(frame["study"])
    assert table["rows"].sum() == len(frame)
    assert np.isfinite(table["calibrated_median_abs_error"]).all()
