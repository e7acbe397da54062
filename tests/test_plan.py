"""``perfmodel plan``: every layout of N GPUs listed, the ones that cannot run with the
reason, the rest ranked. Hand facts: Llama-3.1-70B in bf16 is 141 GB of weights (the
config's 70.6B parameters x 2 bytes), more than one 80 GB H100; Llama-3-8B has 32 query /
8 KV heads, so tp=4 divides both and every layout of 4 GPUs can run."""

from __future__ import annotations

import json

from click.testing import CliRunner

from perfmodel import cli


def _plan(*args):
    res = CliRunner().invoke(cli.cli, ["plan", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_every_layout_of_four_gpus_ranked_by_throughput():
    rows = _plan("--model", "llama-3-8b", "--gpu", "h100", "--gpus", "4", "--batch", "8", "--prompt", "256",
                 "--output", "16")
    layouts = {(r["tp"], r["pp"], r["dp"]) for r in rows}
    assert layouts == {(1, 1, 4), (1, 2, 2), (1, 4, 1), (2, 1, 2), (2, 2, 1), (4, 1, 1)}
    assert all(r["fits"] and r["reason"] == "" for r in rows)
    ranked = sorted(rows, key=lambda r: r["rank"])
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5, 6]
    speeds = [r["output_tokens_per_s"] for r in ranked]
    assert speeds == sorted(speeds, reverse=True)


def test_a_layout_that_does_not_fit_says_by_how_much():
    (row,) = _plan("--model", "llama-3.1-70b", "--gpu", "h100", "--gpus", "1", "--output", "8", "--prompt", "128")
    assert row["rank"] is None and not row["fits"]
    assert row["reason"].startswith("does not fit: needs 13") and row["reason"].endswith("GiB per GPU of 80.0 GiB")


def test_latency_objective_ranks_by_end_to_end_latency():
    rows = _plan("--model", "llama-3-8b", "--gpu", "h100", "--gpus", "2", "--batch", "2", "--prompt", "128",
                 "--output", "8", "--objective", "latency")
    ranked = sorted(rows, key=lambda r: r["rank"])
    assert [r["e2e_latency_s"] for r in ranked] == sorted(r["e2e_latency_s"] for r in rows)


def test_first_stage_layers_apply_to_pipelined_layouts_only():
    """--first-stage-layers 31 on Llama-3-8B (32 layers): pp=2 puts 31 and 1 layers on its
    ranks (runs); pp=4 leaves 1 layer for the other 3 ranks (refused, with the reason);
    layouts without a pipeline ignore it."""
    rows = _plan("--model", "llama-3-8b", "--gpu", "h100", "--gpus", "4", "--batch", "8", "--prompt", "256",
                 "--output", "16", "--first-stage-layers", "31")
    by = {(r["tp"], r["pp"], r["dp"]): r for r in rows}
    assert by[(1, 4, 1)]["reason"] == "first_stage_layers=31 leaves 1 of num_hidden_layers=32 for 3 other stages"
    assert by[(1, 2, 2)]["reason"] == "" and by[(2, 2, 1)]["reason"] == "" and by[(4, 1, 1)]["reason"] == ""
    # the 31-layer stage holds nearly twice the weights of an even 16/16 split
    even = {(r["tp"], r["pp"], r["dp"]): r for r in _plan("--model", "llama-3-8b", "--gpu", "h100", "--gpus", "4",
                                                             "--batch", "8", "--prompt", "256", "--output", "16")}
    assert by[(1, 2, 2)]["memory_per_gpu_bytes"] > 1.5 * even[(1, 2, 2)]["memory_per_gpu_bytes"]
