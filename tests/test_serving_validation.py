"""`validate e2e --published --kind serving`: the tier C rows (a serving scheduler chose
the batch) scored by the serving model; multi-GPU rows kept with their reason; the
fixed-batch scoring unchanged by default. Target: median |error| at most 20% on the
single-GPU serving throughput rows, out of sample (nothing is fitted to them)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from perfmodel.cli import cli
from perfmodel.hardware import e2e


def test_serving_rows_are_mapped_or_have_a_reason():
    frame = e2e.rows("serving")
    tier_c = frame[frame["tier"] == "C"]
    assert tier_c["scored"].sum() >= 90
    assert not frame[frame["tier"] != "C"]["scored"].any()
    multi = tier_c[tier_c["n_gpus"] > 1]
    assert len(multi) and not multi["scored"].any()
    assert multi["reason"].str.contains("parallel layout").all()
    # the fixed kind still leaves the serving rows to the serving model
    fixed = e2e.rows()
    assert fixed[fixed["tier"] == "C"]["reason"].str.contains("--kind serving").all()


def test_validate_e2e_serving_meets_the_target():
    r = CliRunner().invoke(cli, ["validate", "e2e", "--published", "--kind", "serving", "--by", "row", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    throughput = [row for row in rows if row["metric"] == "output_tokens_per_s"]
    assert len(throughput) >= 95
    assert any("bf16" in (row["assumed"] or "") for row in throughput)
    errors = sorted(abs(row["loso_error"]) for row in throughput)
    assert errors[len(errors) // 2] <= 0.20
    assert all(row["fits"] for row in rows)
    # a rate's error is taken on the time it implies: too fast is negative
    row = throughput[0]
    assert row["error"] == __import__("pytest").approx(row["measured"] / row["predicted"] - 1)
