"""Published TFLOP/s and MFU rows as tokens/s per GPU, each through its source's own FLOP
count (hardware/training_conventions.py), against hand derivations from the papers'
formulas and the sources' own cross-checks; one row per run; one scored row's error."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel.hardware import training_validation as tv


@pytest.fixture(scope="module")
def rows():
    return tv.rows().set_index("row", drop=False)


def test_narayanan_eq3_on_the_1t_row(rows):
    # Table 1's 1T run: 163 TFLOP/s per GPU; h 25600, l 128, s 2048, V 51200. Eq. 3 per
    # token (÷ B·s): 96·l·h²·(1 + s/6h + V/16lh), with s/6h = 2048/153600 = 1/75 and
    # V/16lh = 51200/52428800 = 1/1024
    per_token = 96 * 128 * 25600**2 * (1 + 1 / 75 + 1 / 1024)
    assert per_token == pytest.approx(8.16831e12, rel=1e-5)
    r = rows.loc[18]
    assert (r["params"], r["metric"], r["flop_convention"]) == ("1008.0B", "tflops_per_gpu", "narayanan-eq3")
    assert r["measured_tokens_per_s_per_gpu"] == pytest.approx(163e12 / per_token, rel=1e-9)  # 19.955 tokens/s
    # the same run's "% of theoretical peak" (52% of 312 TFLOP/s) says the same within its rounding
    assert rows.loc[19, "measured_tokens_per_s_per_gpu"] == pytest.approx(163e12 / per_token, rel=0.01)


def test_megatron_core_2024_on_the_1p7b_row(rows):
    # num_floating_point_operations (training.py at f2e5db402c) ÷ batch·seq for the 1.7B GPT:
    # h 2048, L 24, 16 heads of 128 (MHA: groups = heads), ffn 4h GeLU, V 131072, s 4096:
    # 12·L·h²·((1 + 1 + s/h)·1 + 4 + V/(2·L·h)) = 12·24·2048²·(4 + 4 + 4/3)
    per_token = 12 * 24 * 2048**2 * (4 + 4 + 131072 / (2 * 24 * 2048))
    r = rows.loc[20]
    assert r["flop_convention"] == "megatron-core-2024"
    assert r["measured_tokens_per_s_per_gpu"] == pytest.approx(408.8e12 / per_token, rel=1e-9)  # 36,259 tokens/s


def test_megatron_core_2024_tflops_and_mfu_columns_agree(rows):
    # the table's two columns of one run (TFLOP/s, MFU of the 989 TFLOP/s dense BF16 peak)
    # give the same tokens/s under the convention, within the MFU's rounding to 1 point
    table = rows[rows["flop_convention"] == "megatron-core-2024"]
    tflops = table[table["metric"] == "tflops_per_gpu"]
    mfu = table[table["metric"] == "mfu"]
    assert len(tflops) == len(mfu) == 9
    ratio = mfu["measured_tokens_per_s_per_gpu"].to_numpy() / tflops["measured_tokens_per_s_per_gpu"].to_numpy()
    assert np.abs(ratio - 1).max() < 0.015


def test_palm_6n_on_llama_3_405b(rows):
    # Llama 3.1 405B: per layer q,o 2·16384², k,v 2·16384·8·128, SwiGLU 3·16384·53248, two
    # RMSNorms; 126 layers, untied 128256-token embeddings and head, final norm
    layer = 2 * 16384**2 + 2 * 16384 * 8 * 128 + 3 * 16384 * 53248 + 2 * 16384
    n = 126 * layer + 2 * 128256 * 16384 + 16384
    assert n == 405_853_388_800
    per_token = 6 * n + 12 * 126 * 128 * 128 * 8192  # PaLM App. B: 6N + 12·L·H·Q·T
    r = rows.loc[125]
    assert (r["metric"], r["value"], r["flop_convention"]) == ("tflops_per_gpu", "430", "palm-6n")
    assert r["measured_tokens_per_s_per_gpu"] == pytest.approx(430e12 / per_token, rel=1e-9)  # 163 tokens/s


def test_megascale_mfu_follows_palm_6n(rows):
    # MegaScale's Table 2 states iteration time and MFU of each run: 6N + 12·L·H·Q·T at
    # 312 TFLOP/s turns the MFU into the tokens/s of the iteration time (batch·2048 / time
    # / GPUs) within 0.4% for its Megatron-LM runs and 1.6% for MegaScale's own (its sliding-
    # window attention does less than the full square it is credited with)
    mfu = rows[rows["source"].str.contains("MegaScale") & (rows["metric"] == "mfu") & (rows["flop_convention"] != "")]
    assert len(mfu) == 16
    for _, r in mfu.iterrows():
        run = rows.loc[int(r["reason"].removeprefix("same run as row "))]
        assert run["metric"] == "iteration_s"
        tokens = int(run["global_batch"]) * 2048 / float(run["value"]) / int(run["n_gpus"])
        bound = 0.004 if "(Megatron-LM)" in r["model"] else 0.016
        assert r["measured_tokens_per_s_per_gpu"] / tokens - 1 == pytest.approx(0, abs=bound), r["row"]


def test_one_row_per_run(rows):
    same = rows["reason"].str.extract(r"^same run as row (\d+)$")[0].dropna().astype(int)
    # Narayanan Table 1: "% of peak" is the TFLOP/s run; Korthikanti's MFU/HFU are Table 5's
    # selective-recompute iteration times; MegaScale's tokens/s and MFU its iteration times,
    # and Table 3's last step (LAMB, batch 768, 65.3%) is Table 2's MegaScale run on 256 GPUs
    assert {1: 0, 19: 18, 42: 41, 43: 41, 54: 53, 69: 68, 70: 68, 124: 80, 126: 125}.items() <= same.to_dict().items()
    # each run is scored (or refused) once: what a row points to points nowhere itself
    assert not set(same.to_numpy()) & set(same.index)
    bridge = rows[rows["source"].str.contains("Megatron-Bridge")]
    pointed = bridge.loc[bridge["metric"] == "tflops_per_gpu", "reason"].str.extract(r"row (\d+)")[0].astype(int)
    assert len(pointed) == 250 and (rows.loc[pointed, "metric"] == "tokens_per_s_per_gpu").all()
    assert (rows.loc[pointed, "model"].to_numpy() == bridge.loc[pointed.index, "model"].to_numpy()).all()


def test_sc21_settings_of_table_1():
    # examples/sc21/run_table_1.sh at 6985e58938: 1.7B TP 1 PP 1 MBS 16, torch DDP; 76B TP 8
    # PP 4 MBS 2, 5 layers per virtual stage of its 60 (3 virtual stages), local DDP
    frame = tv.rows().set_index("row")
    small, large = (tv._layout_kwargs(frame.loc[i]) for i in (0, 10))
    assert (small["micro_batch"], small["interleave"], small["_overlap"]["grad_reduce"]) == (16, 1, True)
    assert (large["micro_batch"], large["interleave"], large["_overlap"]["grad_reduce"]) == (2, 3, False)
    assert not large["sequence_parallel"] and not large["_overlap"]["tp_comm"] and not large["_overlap"]["p2p"]


def test_a_table_1_row_scored_from_the_papers_numbers():
    # Table 1's 1.7B run (32 GPUs, batch 512, 137 TFLOP/s): by Eq. 3 with h 2304, l 24, s 2048,
    # V 51200 the paper's rate is 137e12 / (96·24·2304²·(1 + 2048/13824 + 51200/884736))
    # tokens/s per GPU; the error is on the time it implies
    measured = 137e12 / (96 * 24 * 2304**2 * (1 + 2048 / 13824 + 51200 / 884736))
    row = tv.scored(subset=[0]).iloc[0]
    assert row["reason"] == "" and row["metric"] == "tflops_per_gpu" and row["measured"] == 137
    assert row["measured_tokens_per_s_per_gpu"] == pytest.approx(measured, rel=1e-9)
    assert row["error"] == pytest.approx(measured / row["predicted_tokens_per_s_per_gpu"] - 1, rel=1e-9)
    assert row["predicted"] == pytest.approx(137 * row["predicted_tokens_per_s_per_gpu"] / measured, rel=1e-9)
    assert abs(row["error"]) < 0.3
