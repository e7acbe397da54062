"""`perfmodel request` and `batch request`: the public columns (../shared/CLI.md), the
step table summing to the request, the fits warning, and batch rows equal to single
runs. Values are compared with the library's own request() only for composition; the
times themselves are validated in test_e2e_validation and test_cost_model."""

import json

from click.testing import CliRunner

from perfmodel.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_request_columns_and_fit():
    r = run("request", "--model", "llama-3-8b", "--gpu", "h100", "--batch", "8", "--prompt", "2k", "--output", "256", "--format", "json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    for col in ("ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s", "output_tokens_per_s_per_user", "fits"):
        assert col in row
    assert row["fits"] is True
    # e2e = ttft + 255 decode steps at the mean step time; tokens/s = 8 x 256 / e2e
    assert row["e2e_latency_s"] == __import__("pytest").approx(row["ttft_s"] + 255 * row["tpot_s"], rel=1e-9)
    assert row["output_tokens_per_s"] == __import__("pytest").approx(8 * 256 / row["e2e_latency_s"], rel=1e-9)
    assert row["roofline_e2e_latency_s"] < row["e2e_latency_s"]


def test_request_by_step_sums_to_the_request():
    total = json.loads(run("request", "--model", "llama-3-8b", "--gpu", "a100", "--prompt", "100", "--output", "20", "--format", "json").stdout)[0]
    steps = json.loads(run("request", "--model", "llama-3-8b", "--gpu", "a100", "--prompt", "100", "--output", "20", "--by", "step", "--format", "json").stdout)
    assert len(steps) == 20  # the prefill (step 0) and 19 decode steps
    assert [s["context"] for s in steps[1:]] == list(range(100, 119))
    assert sum(s["time_s"] for s in steps) == __import__("pytest").approx(total["e2e_latency_s"], rel=1e-9)
    assert steps[-1]["elapsed_s"] == __import__("pytest").approx(total["e2e_latency_s"], rel=1e-9)


def test_request_that_does_not_fit_warns():
    # Llama-2-70B in bf16 is 138 GB of weights: more than an 80 GB A100
    r = CliRunner().invoke(cli, ["request", "--model", "llama-2-70b", "--gpu", "a100", "--prompt", "128", "--output", "8", "--format", "json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)[0]["fits"] is False
    assert "warning: does not fit" in r.stderr


def test_batch_request_equals_single_runs(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("model,gpu,batch,prompt,output,weight_dtype,act_dtype,weight_group_size\n"
                    "llama-2-7b,a100,1,128,64,fp16,fp16,\n"
                    "llama-2-7b,a100,1,128,64,int4,fp16,128\n")
    got = json.loads(run("batch", "request", "--input", str(rows), "--format", "json").stdout)
    single = json.loads(run("request", "--model", "llama-2-7b", "--gpu", "a100", "--prompt", "128", "--output", "64",
                            "--weight-dtype", "int4", "--act-dtype", "fp16", "--weight-group-size", "128", "--format", "json").stdout)[0]
    assert got[1]["e2e_latency_s"] == single["e2e_latency_s"]
    # int4 weights stream a quarter of the bytes: decode is faster than fp16
    assert got[1]["tpot_s"] < got[0]["tpot_s"]


def test_validate_e2e_unmapped_lists_reasons():
    r = run("validate", "e2e", "--published", "--unmapped", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows and all(row["reason"] for row in rows)
