"""Inference on a parallel layout: composition checked against hand derivations.

Sources: Shoeybi et al. 2019 (Megatron-LM) §3: per layer forward, one all-reduce of the
b·s·h hidden state after attention and one after the MLP; vLLM's VocabParallelEmbedding
(an all-reduce of the looked-up rows) and its logits gather; the Llama-3.1-70B config
(80 layers, hidden 8192, vocabulary 128256)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from perfmodel import cli
from perfmodel.hardware.catalog import get_accelerator
from perfmodel import request as single
from perfmodel.layout import Layout
from perfmodel.options import Options
from perfmodel.parallel import communication_seconds, local, request
from perfmodel.scenario import Scenario
from tests.test_layout import LLAMA, _arch

H100 = get_accelerator("h100-sxm")
LLAMA70 = _arch("llama-3.1-70b")


def _sc(arch=LLAMA70, batch=1):
    return Scenario(arch, Options(phase="decode"), batch=batch, accelerator=H100)


def test_one_gpu_layout_is_the_single_gpu_request():
    got = request(_sc(LLAMA), Layout(), 128, 32)
    want = single.request(_sc(LLAMA), 128, 32)
    for key in ("ttft_s", "tpot_s", "e2e_latency_s"):
        assert got[key] == pytest.approx(want[key], rel=1e-12)
    assert got["communication_s"] == 0 and got["fits"] == want["fits"]


def test_decode_communication_is_megatron_counts_times_the_collective_model():
    # tp=8, batch 4, one token: 2 x 80 all-reduces of 4*8192*2 bytes, one after the
    # embedding (same size), one all-gather of the logits 4*128256*2 bytes
    layout = Layout(tp=8)
    sc = local(_sc(batch=4), layout).but(seq=1, context=512)
    f = H100.fabric
    hand = (2 * 80 + 1) * f.seconds("all_reduce", 8, 1, 4 * 8192 * 2, custom=True) \
        + f.seconds("all_gather", 8, 1, 4 * 128256 * 2)
    assert communication_seconds(sc, custom=True) == pytest.approx(hand, rel=1e-12)


def test_per_gpu_memory_and_fits():
    # 70B in bf16 (141 GB) does not fit one 80 GB H100; over 8 each holds an eighth of
    # the weights and of the KV cache (8 KV heads: one per GPU), plus replicated norms
    one = request(_sc(), Layout(), 128, 2)
    eight = request(_sc(), Layout(tp=8), 128, 2)
    assert not one["fits"] and eight["fits"]
    assert eight["memory_per_gpu_bytes"] * 8 == pytest.approx(one["memory_per_gpu_bytes"], rel=0.01)


def test_tensor_parallel_speeds_up_decode_less_than_linearly():
    tpot = {tp: request(_sc(), Layout(tp=tp), 128, 8)["tpot_s"] for tp in (2, 4, 8)}
    assert tpot[8] < tpot[4] < tpot[2] and tpot[2] / tpot[8] < 4


def test_cross_node_tensor_parallel_uses_the_nic():
    # tp=16 over two 8-GPU nodes: the all-reduce is hierarchical and much slower
    f = H100.fabric
    message = 4 * 8192 * 2
    assert f.seconds("all_reduce", 8, 2, message) > 1.5 * f.seconds("all_reduce", 8, 1, message)


def test_cli_request_and_roofline_take_parallel_options():
    runner = CliRunner()
    res = runner.invoke(cli.cli, ["request", "--model", "llama-3.1-70b", "--gpu", "h100", "--batch", "2", "--prompt", "128",
                                  "--output", "4", "--tp", "4", "--format", "json"])
    assert res.exit_code == 0, res.output
    import json

    row = json.loads(res.output)[0]
    assert row["tp"] == 4 and row["gpus"] == 4 and row["fits"] is True
    assert row["output_tokens_per_s_per_gpu"] == pytest.approx(row["output_tokens_per_s"] / 4)
    res = runner.invoke(cli.cli, ["roofline", "--model", "llama-3-8b", "--gpu", "h100", "--tp", "2", "--format", "json"])
    rows = json.loads(res.output)
    assert {r["bound"] for r in rows if r["pass"] == "comm"} == {"communication"}


@pytest.mark.parametrize("args, message", [
    (["--tp", "3"], "error: tp=3 does not divide num_attention_heads=64"),
    (["--tp", "4", "--gpus", "8"], "error: gpus=8 is not tp*pp*cp*dp = 4*1*1*1 = 4"),
    (["--pp", "81"], "error: pp=81 exceeds num_hidden_layers=80"),
    (["--dp", "2", "--ep", "2"], "error: ep=2 needs a mixture-of-experts model (no layer has experts)"),
])
def test_bad_layouts_are_one_line_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["request", "--model", "llama-3.1-70b", "--gpu", "h100", "--batch", "2", "--prompt", "128",
                  "--output", "4", *args])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == message


def test_expert_all_to_all_across_nodes_is_hierarchical():
    # ep=8 with tp=2 on 8-GPU nodes: 4 ranks per node, 2 nodes (pairwise exchange inside
    # the node, then over the NICs)
    f = get_accelerator("h200-sxm").fabric
    assert f.seconds("all_to_all", 4, 2, 2**20) > 2 * f.seconds("all_to_all", 4, 1, 2**20)
