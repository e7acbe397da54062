"""The training model against published runs (hardware/data/training-measurements.csv):
Korthikanti et al. 2022 Table 5, end-to-end iteration times of GPT 22B-1T on Selene A100s
(tp 8, pp 1-64, full and selective recomputation), out of sample: the one fitted term (the
A100's sustained compute fraction) refitted without this study. The stored full run
(closing note of issue 12) is the reference for the other sources; this test keeps to the
fast rows."""

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
    scored = tv.scored(subset=rows["row"].tolist())
    # leave-one-source-out (the A100 fraction from MegaScale, Narayanan, BLOOM and MT-NLG):
    # stored run 2026-12-01, median 8.7%, worst 17.8% (22B with selective recomputation);
    # the guard leaves headroom for a refit of the cost model
    error = scored["loso_error"].to_numpy()
    assert np.median(np.abs(error)) <= 0.12
    assert np.abs(error).max() <= 0.3


def test_nemo_24_07_rows_run_the_tables_layouts():
    """NeMo 24.07 performance summary, DGX-H100 FP8 pretraining: LLAMA3-70B on 64 GPUs,
    GBS 128, MBS 1, seq 8192, TP 4, PP 4, CP 2, VP 5 -> dp = 64 / (4·4·2) = 2, 64 micro-batches."""
    rows = tv.rows()
    nemo = rows[rows["scored"] & rows["source"].str.startswith("NVIDIA/NeMo docs")]
    assert list(nemo["model"]) == ["LLAMA2-7B", "LLAMA2-13B", "LLAMA2-70B", "LLAMA3-8B", "LLAMA3-70B"]
    r = nemo.iloc[-1]
    kw = tv._layout_kwargs(r)
    assert (kw["gpus"], kw["tp"], kw["pp"], kw["cp"], kw["interleave"], kw["micro_batch"], kw["global_batch"]) == \
        (64, 4, 4, 2, 5, 1, 128)
    assert r["arch"].num_hidden_layers == 80 and tv._dtype(r["dtype"]) == "fp8"


def _mlperf(rows, gpu: str, model: str):
    mlperf = rows[rows["scored"] & rows["source"].str.startswith("MLCommons MLPerf")]
    return mlperf[mlperf["gpu"].str.startswith(gpu) & mlperf["model"].str.startswith(model)]


def test_mlperf_rows_run_the_submitted_configs():
    """MLPerf Training v5.1, University of Florida, 32 DGX B200 nodes, Llama 3.1 405B:
    config_DGXB200_32x8x144xtp4pp8cp2_cg.sh sets TP 4, PP 8, INTERLEAVED_PIPELINE 8, CP 2,
    MICRO_BATCH_SIZE 1, ASYM_PP_EMBED/LOSS, and leaves ``#export TP_COMM_OVERLAP=True``
    commented out; its log has global_batch_size 576 and gradient_accumulation_steps 144:
    dp = 256 / (4·8·2) = 4 and 576 / (4·1) = 144 micro-batches. NVIDIA's GB200 256-GPU
    config (config_GB200_64x4x112xtp4pp8cp2_cg.sh) sets TP_COMM_OVERLAP=True."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.train import make_layout

    rows = tv.rows()
    uf = _mlperf(rows, "B200", "Llama 3.1 405B").iloc[0]
    kw = tv._layout_kwargs(uf)
    assert (kw["gpus"], kw["tp"], kw["pp"], kw["cp"], kw["interleave"], kw["micro_batch"], kw["global_batch"]) == \
        (256, 4, 8, 2, 8, 1, 576)
    assert kw["embedding_in_split"] and kw["loss_in_split"] and not kw["_overlap"]["tp_comm"]
    assert kw["_recompute"] == "none" and tv._dtype(uf["dtype"]) == "fp8"
    layout = make_layout(uf["arch"], get_accelerator(uf["accelerator"]),
                         **{k: v for k, v in kw.items() if not k.startswith("_")})
    assert (layout.dp, layout.micro_batches) == (4, 144)
    nvidia = _mlperf(rows, "GB200", "Llama 3.1 405B").iloc[0]
    assert tv._layout_kwargs(nvidia)["_overlap"]["tp_comm"] and int(nvidia["n_gpus"]) == 256
    # Dell's 8-GPU XE9780 B300 node (MLPerf system "B300-SXM-270GB") and NVIDIA's GB300 racks are catalog parts
    assert _mlperf(rows, "B300", "Llama 3.1 8B").iloc[0]["accelerator"] == "b300"
    assert set(_mlperf(rows, "GB300", "Llama 3.1 8B")["accelerator"]) == {"gb300"}


def test_mlperf_llama_405b_step_times_out_of_sample():
    """MLPerf Training v5.0 Llama 3.1 405B median ``train_step_time`` of the result logs
    (H100 512-8192 GPUs, H200 512-1024, GB200 256-2496), predicted with the fractions
    fitted without MLPerf. Stored run 2026-12-01: H100/H200 within 1%, GB200 -5 to -8%.
    (University of Florida's B200 rows are +33% out of sample: Megatron-Bridge's B200 runs,
    mostly MoE, fit 0.49; the closing note of issue 12 has them.) The guard leaves headroom
    for a refit of the cost model."""
    rows = tv.rows()
    rows = rows[rows["scored"] & rows["source"].str.startswith("MLCommons MLPerf")
                & rows["model"].str.startswith("Llama 3.1 405B") & ~rows["gpu"].str.startswith("B200")]
    assert len(rows) == 14
    scored = tv.scored(subset=rows["row"].tolist())
    error = np.abs(scored["loso_error"].to_numpy())
    assert np.median(error) <= 0.06
    assert error.max() <= 0.15
