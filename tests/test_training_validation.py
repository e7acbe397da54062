"""The training model against published runs it was never fitted to
(hardware/data/training-measurements.csv): Korthikanti et al. 2022 Table 5, end-to-end
iteration times of GPT 22B-1T on Selene A100s (tp 8, pp 1-64, full and selective
recomputation). The stored full run (closing note of issue 12) is the reference for the
other sources; this test keeps to the fast rows."""

from __future__ import annotations

import numpy as np

from perfmodel.hardware import training_validation as tv


def test_every_unscored_row_says_why():
    rows = tv.rows()
    assert rows["scored"].sum() >= 100
    assert (rows.loc[~rows["scored"], "reason"].str.len() > 0).all()


def test_korthikanti_table_5_iteration_times():
    rows = tv.rows()
    rows = rows[rows["scored"] & rows["source"].str.startswith("Korthikanti")]
    assert len(rows) == 8
    predicted = np.array([tv.predict_row(r) for _, r in rows.iterrows()])
    error = predicted / rows["value"].to_numpy(dtype=float) - 1
    # no parameter is fitted to training rows: every one is out of sample. Stored run
    # (branch train-parallel, which reads calculon's pipeline_interleaving 3 for 175B and
    # 530B and sends the sequence-parallel shard between stages; before: 3.3% / 20.7% with
    # v = 1): median 8.9%, worst 20.8% (22B with selective recomputation, too fast); the
    # guard leaves a third of headroom for a refit of the cost model
    assert np.median(np.abs(error)) <= 0.12
    assert np.abs(error).max() <= 0.3
