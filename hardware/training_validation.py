"""Published training runs (``data/training-measurements.csv``, notes in
``data/training-measurements.md``) scored by ``perfmodel train``'s iteration model.

A row is scored when its model config, GPU, layout and batch are known; every other row
keeps the reason. ``tokens_per_s_per_gpu``, ``tokens_per_s`` and ``iteration_s`` need no
FLOP convention. A ``tflops_per_gpu`` row (and an ``mfu``/``hfu``/``pct_peak_hfu`` row,
times the peak its source divides by) becomes tokens/s per GPU through *its source's own*
FLOP count per token (:data:`CONVENTIONS`, each a sympy expression defined once), and is
scored on that. One row per run: a run published as several metrics is scored once, from
the first of :data:`METRIC_ORDER`; its other rows say "same run as row N". The error is
``predicted/measured − 1`` on the time (for a rate, on the time it implies: negative = too
fast). One term of the training model is fitted to these rows: the sustained compute
fraction of each die (:mod:`perfmodel.hardware.training_fit`); every other term comes from
the kernel, engine and nccl-tests fits. ``error`` is in sample (the stored fractions);
``loso_error`` predicts each study's rows with the fractions fitted without it.
"""

from __future__ import annotations

import functools
import io
import re
from importlib import resources

import numpy as np
import pandas as pd

from perfmodel.errors import PerfmodelError
from perfmodel.hardware import training_conventions as conv

FILE = "training-measurements.csv"
#: published GPU label prefix -> catalog key (A100-class Ampere: MegaScale's cluster)
GPUS = {"H100": "h100-sxm", "H200": "h200-sxm", "B200": "b200", "GB200": "gb200", "B300": "b300", "GB300": "gb300",
        "A100": "a100-80gb-sxm", "NVIDIA Ampere": "a100-80gb-sxm"}
#: Megatron-Bridge recipe names -> shipped config (preset or e2e-configs file)
MODELS = {"LLAMA3_70B": "llama-3.1-70b", "LLAMA3_8B": "llama-3-8b", "LLAMA3.1_405B": "meta-llama--Llama-3.1-405B",
          "Llama 3 405B": "meta-llama--Llama-3.1-405B", "Llama 3.1 405B": "meta-llama--Llama-3.1-405B",
          "Llama 3.1 8B": "llama-3-8b",  # MLPerf's llama31_8b: Llama 3.1 8B, Llama 3 8B's shapes
          "DeepSeekV3": "deepseek-v3", "Qwen3_30B_a3B": "qwen3-30b-a3b",
          # NeMo 24.07's table (Llama 3 70B: Llama 3.1 70B's shapes; its RoPE scaling costs no FLOPs)
          "LLAMA2-7B": "llama-2-7b", "LLAMA2-13B": "meta-llama--Llama-2-13b-hf", "LLAMA2-70B": "llama-2-70b",
          "LLAMA3-8B": "llama-3-8b", "LLAMA3-70B": "llama-3.1-70b"}
#: GPT dimensions of labels that do not spell them: Narayanan Table 2's 174.6B is GPT-3
#: 175B (§5.2: 96 layers, 96 heads, hidden 12288) and its 529.6B is Table 1's; BLOOM-176B
#: from bigscience/bloom config.json (n_embed 14336, n_layer 70, 112 heads, vocab 250880;
#: ALiBi instead of learned positions, <0.1% of the FLOPs); MT-NLG 530B from its Section
#: 2.4 setup as llm-analysis's examples/megatron-turing-nlg/README.md quotes it (hidden
#: 20480, 105 layers, 128 heads), vocabulary GPT-2's BPE padded as Megatron pads it (51200;
#: the vocabulary term is 0.15% of Eq. 3)
GPT_DIMS = {"GPT 174.6B": "h=12288 L=96 heads=96 V=51200", "GPT 529.6B": "h=20480 L=105 heads=128 V=51200",
            "BLOOM-176B": "h=14336 L=70 heads=112 V=250880", "Megatron-Turing NLG 530B": "h=20480 L=105 heads=128 V=51200"}
METRICS = {"tokens_per_s_per_gpu": "tokens_per_s_per_gpu", "tokens_per_s": "tokens_per_s", "iteration_s": "step_time_s"}
#: a run published as several metrics is scored from the first of these (the others: "same run")
METRIC_ORDER = ("iteration_s", "tokens_per_s_per_gpu", "tokens_per_s", "tflops_per_gpu", "mfu", "pct_peak_hfu", "hfu",
                "gpu_hours_per_trillion_tokens")
RATES = ("tflops_per_gpu", "mfu", "hfu", "pct_peak_hfu")
_GPT = re.compile(r"h=(\d+) L=(\d+)(?: heads=(\d+))?(?: V=(\d+))?")


def read() -> pd.DataFrame:
    return pd.read_csv(io.StringIO((resources.files("perfmodel.hardware") / "data" / FILE).read_text(encoding="utf-8")))


@functools.cache
def _arch(label: str, seq: int):
    from perfmodel.hf_config import from_config, read_config_file
    from perfmodel.presets import preset_path

    dims = next((d for prefix, d in GPT_DIMS.items() if label.startswith(prefix)), label)
    m = _GPT.search(dims)
    if m:  # Megatron's GPT: LayerNorm, learned positions, 4h GeLU MLP, 128-wide heads unless stated
        h, layers, heads, vocab = m.groups()
        return from_config({"model_type": "gpt2", "n_embd": int(h), "n_layer": int(layers),
                            "n_head": int(heads) if heads else int(h) // 128, "vocab_size": int(vocab or 51200),
                            "n_positions": seq}, name=label)
    base = re.sub(r"\s*\(.*\)$", "", label)
    name = MODELS.get(base)
    if name is None:
        return None
    if "--" in name:
        path = resources.files("perfmodel.hardware") / "data" / "e2e-configs" / f"{name}.json"
    else:
        path = preset_path(name)
    return from_config(read_config_file(path), name=name)


def _gpu(label: str):
    for prefix, key in GPUS.items():
        if label.startswith(prefix):
            return key
    return None


def _dtype(label: str) -> str:
    text = str(label).upper()
    return "fp8" if "FP8" in text else "bf16"


def _count(cell, default=1) -> int:
    return default if pd.isna(cell) else int(cell)


def _study(source: str) -> str:
    """A short name per study (the first words of the source, or its table)."""
    for key, name in (("cases_april2021", "Narayanan et al. 2021 Table 1"), ("arXiv 2104.04473) Table 2", "Narayanan et al. 2021 Table 2"),
                      ("BLOOM", "BLOOM (stas00/ml-engineering)"), ("stas00/ml-engineering (same", "BLOOM (stas00/ml-engineering)"),
                      ("MFU/HFU table", "Megatron-LM README 2022 (Korthikanti MFU/HFU)"),
                      ("Performance Benchmarking", "Megatron-LM README 2024 (H100)")):
        if key in source:
            return name
    m = re.match(r"^(\S+(?: et al\.)? ?\S*)", source)
    return m.group(1) if m else source


# --- one row per run ---------------------------------------------------------------

def _run_key(r) -> tuple:
    """What identifies one run: the model, hardware, layout and batch cells, and the
    source's own row (its notes). Korthikanti et al.'s MFU/HFU (the Megatron-LM README of
    2022) are the MFU/HFU columns of Table 5, whose iteration times calculon copies: the
    same runs, matched without the notes. MegaScale's Table 3 last step (LAMB, batch 768,
    65.3%) is Table 2's MegaScale run on 256 GPUs (65.3%); PaLM's MFU and HFU are one
    sentence about one run."""
    model, source = str(r["model"]), str(r["source"])
    if model.startswith("PaLM 540B"):
        return ("PaLM 540B",)
    notes = "" if ("Korthikanti" in source or "MFU/HFU table" in source) else str(r["notes"])
    if model.startswith("GPT-style 175B ablation step 9"):
        model, notes = "GPT-style 175B (MegaScale) h=12288 L=96 heads=128 V=64000", "megascale-table-2"
        return (model, int(r["n_gpus"]), int(r["global_batch"]), notes)
    if "MegaScale" in source and "(MegaScale)" in model:
        notes = "megascale-table-2"
        return (model, int(r["n_gpus"]), int(r["global_batch"]), notes)
    cells = ("model", "gpu", "n_gpus", "tp", "pp", "dp", "ep", "cp", "global_batch", "seq_len", "micro_batch",
             "recompute", "dtype")
    return tuple(str(r[c]) for c in cells) + (notes,)


def _same_run(frame: pd.DataFrame) -> dict:
    """row -> the row its run is scored from (only for the rows that are not it)."""
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    out = {}
    for _, group in frame.groupby(frame.apply(_run_key, axis=1), sort=False):
        if len(group) > 1:
            order = sorted(group.index, key=lambda i: (rank.get(group.at[i, "metric"], len(rank)), i))
            out.update({i: order[0] for i in order[1:]})
    return out


# --- each source's FLOP convention and run settings -----------------------------------

#: Narayanan et al. 2021 Table 1, as run by Megatron-LM's examples/sc21/run_table_1.sh at
#: 6985e58938 (the commit examples/sc21/README.md names to reproduce the paper): size ->
#: (MBS, layers per virtual pipeline stage or None, DDP-impl). ``local`` DDP all-reduces the
#: gradients after the whole forward-backward (megatron/training.py train_step); ``torch``
#: DDP reduces under the last micro-batch's backward.
SC21_TABLE_1 = {"1.7B": (16, None, "torch"), "3.6B": (16, None, "torch"), "7.5B": (16, None, "torch"),
                "18.4B": (8, None, "torch"), "39.1B": (4, None, "local"), "76.1B": (2, 5, "local"),
                "145.6B": (2, 5, "local"), "310.1B": (1, 3, "local"), "529.6B": (1, 1, "local"),
                "1008.0B": (1, None, "local")}


def _narayanan_table_1(r) -> bool:
    return "cases_april2021" in str(r["source"])


def _narayanan_table_2(r) -> bool:
    return "2104.04473) Table 2" in str(r["source"])


def _megatron_deepspeed(r) -> bool:
    """BLOOM and MT-NLG: Megatron-DeepSpeed with DeepSpeed's pipeline engine."""
    return "BLOOM" in str(r["model"]) or "Megatron-Turing" in str(r["model"])


def _convention(r) -> str | None:
    """The FLOP convention the row's source divides by (None: no rate to convert)."""
    source, model = str(r["source"]), str(r["model"])
    if r["metric"] not in RATES:
        return None
    if _narayanan_table_1(r) or _narayanan_table_2(r) or _megatron_deepspeed(r):
        return "narayanan-eq3"
    if "Performance Benchmarking" in source:
        return "megatron-core-2024"
    if "Llama" in source or ("MegaScale" in source and "h=" in model):
        return "palm-6n"
    return None


def _unscored_config(r) -> str:
    """What a source leaves out that the iteration depends on ('' = nothing)."""
    source, model, metric = str(r["source"]), str(r["model"]), r["metric"]
    if "Performance Benchmarking" in source:
        return ("micro-batch size not stated (images/model_table.png, README at f2e5db402c) and Megatron-LM has no "
                "default (megatron/training/arguments.py: `assert args.micro_batch_size is not None`); NVIDIA/Megatron-LM "
                "issue #1571 asks for these configs, unanswered" + ("; nor the interleaving" if _count(r["pp"]) > 1 else ""))
    if "Strong Scaling" in source:
        return "TP/PP per point not stated (plot only)"
    if "Llama" in source:
        reason = ("interleaving depth V and micro-batch size not stated (§3.3.2: 'an interleaved schedule with V pipeline "
                  "stages on one pipeline rank', bubble (PP-1)/(V*M); Table 4 gives neither)")
        if _count(r["cp"]) > 1:
            reason += "; the printed DP 4 contradicts 16,384 GPUs (8*16*16*4 = 8192) and 16M tokens per batch"
        return reason
    if model.startswith("GPT-style 175B ablation step 1"):
        return "micro-batch size not stated (MegaScale §6.1 / Table 3; Megatron-LM has no default)"
    if model.startswith("GPT-style 175B ablation step"):
        return ("ablation step with MegaScale's changes the iteration model does not represent (parallel transformer "
                "block, sliding-window attention, fused operators, LAMB) and an unstated micro-batch")
    if "PaLM" in model:
        return ("no shipped PaLM config (parallel attention+MLP, multi-query attention) and the global batch ramps "
                "512->1024->2048 over the run the figure describes")
    if "OPT" in model:
        return "'up to 147 TFLOP/s' is a peak, not a run's rate; TP degree and batch not stated"
    if "DeepSeek-V3" in model and metric == "gpu_hours_per_trillion_tokens":
        return "H800 is not in the accelerator catalog; global batch ramps 3072->15360; DualPipe schedule"
    if "BLOOM" in model and int(r["global_batch"]) == 16:
        return ("a benchmark before the run: its micro-batch and layout are not stated (the transcription assumes "
                "MBS 2; the run's ramp started at GBS 192)")
    return ""


def _peak_flops_per_s(accelerator: str) -> float:
    """The dense 16-bit peak the MFU sources divide by: Narayanan et al. 312 TFLOP/s
    (A100), Megatron-LM's H100 table 989 (NVIDIA/Megatron-LM issue #1276), Llama 3 "BF16
    MFU" (430 TFLOP/s at 43%): the catalog's dense BF16 peak of the GPU."""
    from perfmodel.hardware.catalog import get_accelerator

    return float(get_accelerator(accelerator).peak_flops_per_s["bf16"])


def _missing_input(r, gpu, arch, convention) -> str:
    """The first model input the row lacks ('' = none)."""
    if r["metric"] not in METRICS and convention is None:
        return f"metric {r['metric']}: the source's FLOP convention is not stated"
    if gpu is None:
        return f"{r['gpu']} is not in the accelerator catalog"
    if arch is None:
        return f"no shipped config for {r['model']}"
    if pd.isna(r["global_batch"]) or pd.isna(r["tp"]):
        return "global batch or layout not stated"
    if "NVFP4" in str(r["dtype"]).upper():
        return "NVFP4: no fp4 peak in the catalog"
    if "Megatron-Bridge" in str(r["source"]) and "not stated" in str(r["dtype"]):
        # the archive's 25.09 table has no precision column; its runs are FP8 or BF16
        return "precision not stated (Megatron-Bridge 25.09 table): the FP8 and BF16 peaks differ 2x"
    return ""


def rows() -> pd.DataFrame:
    """Every row with the iteration model's inputs, its FLOP convention and converted
    tokens/s per GPU (rates only) and ``reason`` ('' = scored)."""
    frame = read()
    same = _same_run(frame)
    out = []
    for i, r in frame.iterrows():
        rec = r.to_dict()
        rec["row"] = i
        seq = _count(r["seq_len"], 2048)
        arch = _arch(str(r["model"]), seq)
        gpu = _gpu(str(r["gpu"]))
        convention = _convention(r)
        measured_tokens = np.nan
        if convention and arch is not None and gpu is not None:
            flops = conv.flops_per_token(convention, arch, seq)
            measured_tokens = conv.tokens_per_s_per_gpu(r["metric"], float(r["value"]), flops, _peak_flops_per_s(gpu))
        reason = _unscored_config(r) or _missing_input(r, gpu, arch, convention)
        reason = f"same run as row {same[i]}" if i in same else reason
        rec.update(accelerator=gpu, arch=arch, seq=seq, flop_convention=convention or "",
                   measured_tokens_per_s_per_gpu=measured_tokens, reason=reason, scored=not reason)
        out.append(rec)
    return pd.DataFrame(out)


#: pipeline interleaving written out in a source's sentence ("six interleaving stages")
_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "eight": 8}


def _interleave(notes: str, pp: int) -> int:
    """Virtual stages per GPU from the row's notes: Megatron-Bridge ``VP=n``, calculon's
    ``pipeline_interleaving n`` (Korthikanti Table 5), MegaScale's "six interleaving stages"."""
    m = (re.search(r"VP=(\d+)", notes) or re.search(r"pipeline_interleaving (\d+)", notes)
         or re.search(r"(\w+) interleaving stages", notes))
    if m is None or pp == 1:
        return 1
    v = int(m.group(1)) if m.group(1).isdigit() else _WORDS.get(m.group(1).lower(), 1)
    return max(v, 1)


def _bridge(r) -> bool:
    return "Megatron-Bridge" in str(r["source"])


def _layout_kwargs(r) -> dict:
    """The iteration model's inputs from one row (cells, then the row's notes, then the
    recipe the source ran, each said where it is read):

    - Megatron-Bridge ``FSDP=n`` (n > 0): Megatron-FSDP's full shard = ZeRO-3, else the
      distributed optimizer (ZeRO-1, ``use_distributed_optimizer=True`` in every recipe).
    - MLPerf Training result logs: the row's notes carry its config's ``TP_COMM_OVERLAP``
      and ``ASYM_PP_EMBED``/``ASYM_PP_LOSS`` (the embedding and the loss as pipeline layers,
      as Megatron-Bridge's ``account_for_..._in_pipeline_split``); the other settings are
      the defaults here: distributed optimizer, overlapped DP and p2p communication,
      sequence parallelism, no recomputation (no config sets ``ACT_CKPT_*``).
    - Llama-3.1-405B on Megatron-Bridge: the recipe sets
      ``account_for_embedding_in_pipeline_split`` and ``..._loss_...`` (recipes/llama/llama3.py
      ``llama31_405b_pretrain_config``).
    - TP communication overlap: Megatron-Bridge's Llama recipes and performance scripts set
      ``tp_comm_overlap`` when tp > 1 (``CommOverlapConfig(tp_comm_overlap=tp > 1)``;
      llama3_70b/llama31_405b: userbuffers configs); MegaScale's own system overlaps TP, PP
      and DP communication (Jiang et al. 2024 §3.2, Table 3 "TP/PP/DP overlap"); Megatron-LM
      rows run its defaults (no TP overlap), except the 2024 H100 table's ("--overlap-grad-reduce,
      --overlap-param-gather, --tp-comm-overlap, PP enabled by default", README at
      f2e5db402c; its rows await a stated micro-batch).
    - Pipeline send/receive overlap (Megatron-Core ``overlap_p2p_comm``, interleaved
      schedule): off for Korthikanti et al. 2022 (Megatron-LM of 2022, before the option)
      and the Megatron-LM rows of MegaScale (its Table 3 lists "PP overlap" among
      MegaScale's own additions); on elsewhere (the default since).
    - Data-parallel overlap (gradient reduce-scatter under the backward, parameter
      all-gather under the next forward): off for the Megatron-LM rows of MegaScale (its
      Table 3 lists "DP overlap" among MegaScale's additions to Megatron-LM commit
      285068c8, §6.1); on elsewhere (Megatron-Core's ``overlap_grad_reduce`` /
      ``overlap_param_gather``, set by the recipes).
    - EP all-to-all overlap: Megatron-Bridge's DeepSeek-V3 H100 configuration (1024 GPUs,
      tp 2, pp 8, vp 4, ep 64, GBS 8192: the row's cells) sets ``moe_a2a_overlap=True``
      (scripts/performance/configs/deepseek/deepseek_workload_base_configs.py); other rows
      do not state it (off, Megatron-Core's default).
    - Narayanan et al. 2021 Table 1: micro-batch, interleaving and DDP from
      :data:`SC21_TABLE_1`; Table 2's PTD-P rows: their micro-batch 1, no interleaving
      (``--num-layers-per-virtual-pipeline-stage`` defaults to None, megatron/arguments.py
      at 6985e58938) and local DDP (train_step asserts it when pp > 1); its ZeRO-3 rows:
      DeepSpeed ZeRO-3 (``overlap_comm`` defaults to ``stage == 3``,
      deepspeed/runtime/zero/config.py: reduction and prefetch overlapped). No sequence
      parallelism in 2021 (Korthikanti et al. 2022 introduced it), no TP or p2p overlap.
    - BLOOM and MT-NLG (Megatron-DeepSpeed): DeepSpeed's pipeline engine runs 1F1B without
      interleaving and reduces gradients after the last micro-batch (``TrainSchedule``
      appends ``ReduceGrads`` at the batch's last step, deepspeed/runtime/pipe/schedule.py);
      no sequence parallelism, no TP or p2p overlap. BLOOM's micro-batch is 2, "was MBS=1
      till GBS=784" (bigscience train/tr11-176B-ml/tr11-176B-ml.slurm at e726b159).
    - Attention and dropout of these 2021-22 codes (Megatron-LM at 6985e58938, bigscience
      Megatron-DeepSpeed, and Korthikanti et al. 2022's Megatron-LM, which adds sequence
      parallelism and selective recomputation to it): the scores are materialized (``torch.baddbmm``, fused softmax;
      no FlashAttention: ``attention_impl="naive"``) and attention and hidden dropout default
      to 0.1 (megatron/arguments.py; neither the sc21 scripts nor BLOOM's slurm change them).
      Other rows: FlashAttention, no dropout (the iteration model's defaults).
    """
    notes = str(r["notes"])
    recompute = str(r["recompute"]).lower()
    pp, tp = _count(r["pp"]), _count(r["tp"])
    fsdp = re.search(r"FSDP=(\d+)", notes)
    bridge = _bridge(r)
    megascale = "(MegaScale)" in str(r["model"])
    megatron_baseline = "MegaScale" in str(r["source"]) and not megascale
    kw = {
        "gpus": int(r["n_gpus"]), "tp": tp, "pp": pp, "ep": _count(r["ep"]),
        "cp": _count(r["cp"]), "global_batch": int(r["global_batch"]), "micro_batch": _count(r["micro_batch"]),
        "interleave": _interleave(notes, pp),
        "sequence_parallel": tp > 1 and "no sequence parallel" not in notes,
        "zero": 3 if bridge and fsdp and int(fsdp.group(1)) > 0 else 1,
        "_recompute": "full" if recompute.startswith("full") else "selective" if recompute.startswith("selective") else "none",
        "_overlap": {"tp_comm": (bridge or megascale or "Performance Benchmarking" in str(r["source"])
                                 or "TP_COMM_OVERLAP=True" in notes) and tp > 1,
                     "p2p": not ("Korthikanti" in str(r["source"]) or megatron_baseline),
                     "grad_reduce": not megatron_baseline, "param_gather": not megatron_baseline,
                     "ep_comm": bridge and str(r["model"]).startswith("DeepSeekV3") and str(r["gpu"]).startswith("H100")},
    }
    if bridge and str(r["model"]).startswith("LLAMA3.1_405B") or "ASYM_PP_EMBED=True ASYM_PP_LOSS=True" in notes:
        kw.update(embedding_in_split=True, loss_in_split=True)
    if _narayanan_table_1(r):
        mbs, per_virtual, ddp = SC21_TABLE_1[str(r["params"])]
        layers = r["arch"].num_hidden_layers
        kw.update(micro_batch=mbs, interleave=layers // (pp * per_virtual) if per_virtual else 1)
        kw["_overlap"]["grad_reduce"] = ddp == "torch"
    if _narayanan_table_2(r) and "ZeRO-3" in str(r["model"]):
        kw["zero"] = 3
    if "BLOOM" in str(r["model"]) and int(r["global_batch"]) < 784:
        kw["micro_batch"] = 1
    kw["_options"] = {}
    if _narayanan_table_1(r) or _narayanan_table_2(r) or _megatron_deepspeed(r):
        kw["_options"] = {"attention_impl": "naive", "dropout": True}
        kw["sequence_parallel"] = False
        kw["_overlap"].update(p2p=False, tp_comm=False)
        if pp > 1:  # Megatron's local DDP, DeepSpeed's pipeline engine: reduce after the last micro-batch
            kw["_overlap"]["grad_reduce"] = False
    if "Korthikanti" in str(r["source"]):  # Megatron-LM of 2022: its sequence parallelism, the same attention
        kw["_options"] = {"attention_impl": "naive", "dropout": True}
    return kw


def predict_row(r, eta: float | None = None) -> float:
    """The row's metric as ``perfmodel train`` predicts it (``eta``: the sustained compute
    fraction; default the accelerator's fitted one)."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.options import Options
    from perfmodel.scenario import Scenario
    from perfmodel.train import Overlap, iteration, make_layout

    kw = _layout_kwargs(r)
    recompute, overlap = kw.pop("_recompute"), Overlap(**kw.pop("_overlap"))
    options = Options(phase="train", recompute=recompute, optimizer="megatron-bf16", **kw.pop("_options"))
    acc = get_accelerator(r["accelerator"])
    dtype = _dtype(r["dtype"])
    sc = Scenario(r["arch"], options, seq=int(r["seq"]), act_dtype=dtype, kv_dtype=dtype, accelerator=acc)
    layout = make_layout(r["arch"], acc, **kw)
    return iteration(sc, layout, overlap=overlap, eta=eta)[METRICS.get(r["metric"], "tokens_per_s_per_gpu")]


def _time(r, value: float) -> float:
    """A row's value as a time: iteration seconds, or seconds per token for a rate."""
    return value if r["metric"] == "iteration_s" else 1.0 / value


def fit_inputs() -> pd.DataFrame:
    """The scored rows that run, each with ``time_at`` (the predicted time as a function of
    the sustained compute fraction) and ``measured_time``: what :mod:`training_fit` fits."""
    frame = rows()
    frame = frame[frame["scored"]].copy()
    keep, times = [], []
    for i, r in frame.iterrows():
        try:
            predict_row(r, 1.0)  # builds the row's stage costs once; every other fraction is then cheap
        except PerfmodelError:
            continue
        keep.append(i)
        times.append(lambda eta, r=r: _time(r, predict_row(r, eta)))
    frame = frame.loc[keep]
    measured = np.where(frame["flop_convention"] != "", frame["measured_tokens_per_s_per_gpu"], frame["value"].astype(float))
    frame["time_at"] = times
    frame["measured_time"] = [_time(r, m) for (_, r), m in zip(frame.iterrows(), measured)]
    frame["study"] = frame["source"].map(_study)
    return frame


def scored(subset=None) -> pd.DataFrame:
    """The scored rows (or those of ``subset``, row numbers) with ``predicted`` and
    ``measured`` in the row's own metric, ``error`` (in sample) and ``loso_error`` (the
    row's die fraction fitted without its study); a rate row also has ``measured_/predicted_tokens_per_s_per_gpu``
    (its ``flop_convention``). A row whose layout cannot run gets its reason instead."""
    from perfmodel.hardware.cost_data import stored
    from perfmodel.hardware.training_fit import loso_fraction

    frame = rows()
    frame = frame[frame["scored"] & (frame["row"].isin(subset) if subset is not None else True)].copy()
    frame["study"] = frame["source"].map(_study)
    loso = stored().get("training_fit", {}).get("leave_one_source_out")
    predicted, held_out, reasons = [], [], []
    for _, r in frame.iterrows():
        try:
            fitted = predict_row(r)
            eta = loso_fraction(loso, r["study"], r["accelerator"]) if loso else None
            held = fitted if eta is None else predict_row(r, eta)
        except PerfmodelError as exc:
            fitted = held = np.nan
            reasons.append(str(exc))
        else:
            reasons.append("")
        predicted.append(fitted)
        held_out.append(held)
    frame["reason"] = reasons
    frame["measured"] = frame["value"].astype(float)
    rate = frame["flop_convention"] != ""
    frame["predicted_tokens_per_s_per_gpu"] = np.where(rate, predicted, np.nan)

    def in_metric(values):  # a converted rate: the prediction in the row's metric by the same (linear) conversion
        return np.where(rate, frame["measured"] * np.where(rate, values, np.nan) / frame["measured_tokens_per_s_per_gpu"],
                        values)

    def error(values):
        ratio = values / frame["measured"]
        return np.where(frame["metric"] == "iteration_s", ratio, 1 / ratio) - 1

    frame["predicted"] = in_metric(np.array(predicted, dtype=float))
    frame["error"] = error(frame["predicted"])
    frame["loso_error"] = error(in_metric(np.array(held_out, dtype=float)))
    frame["model_size"] = frame["arch"].map(lambda a: a.name)
    frame["layout"] = [f"tp{int(t)} pp{int(p)} ep{_count(e)}" for t, p, e in zip(frame["tp"], frame["pp"], frame["ep"])]
    return frame


KEYS = ("study", "gpu", "accelerator", "model_size", "layout", "metric", "dtype")


def report(by: str = "study", study: str | None = None) -> pd.DataFrame:
    """``validate training --published``: median / p90 |error| per ``by`` keys (or ``row``);
    ``study``: only the runs whose study or source contains this text (any case). Both are
    checked before any run is scored (scoring every run takes minutes)."""
    keys = [] if by == "row" else [k.strip() for k in by.split(",") if k.strip() and k.strip() != "all"]
    listed = rows()
    unknown = [k for k in keys if k not in {*listed.columns, *KEYS}]
    if unknown:
        raise PerfmodelError(f"--by {unknown[0]!r}: not a column (use row, or some of {', '.join(KEYS)})")
    subset = None
    if study is not None:
        names = listed["source"].map(_study)
        match = listed["scored"] & (names.str.contains(study, case=False, regex=False)
                                    | listed["source"].str.contains(study, case=False, regex=False))
        if not match.any():
            raise PerfmodelError(f"--study {study!r}: no scored run's study or source contains it "
                                 f"(studies: {', '.join(sorted(names[listed['scored']].unique()))})")
        subset = listed.loc[match, "row"].tolist()
    frame = scored(subset)
    if by == "row":
        return frame[["row", "study", "metric", "measured", "predicted", "flop_convention", "measured_tokens_per_s_per_gpu",
                      "predicted_tokens_per_s_per_gpu", "error", "loso_error", "model", "gpu", "n_gpus", "tp", "pp", "dp",
                      "ep", "cp", "global_batch", "seq", "reason"]].reset_index(drop=True)
    ok = frame[frame["reason"] == ""]
    grouped = ok.assign(all="all").groupby(keys or ["all"], dropna=False)
    out = grouped.size().rename("rows").to_frame()
    for col, label in (("error", "in_sample"), ("loso_error", "leave_one_source_out")):
        out[f"{label}_median_abs_error"] = grouped[col].apply(lambda x: float(x.abs().median()))
        out[f"{label}_p90_abs_error"] = grouped[col].apply(lambda x: float(x.abs().quantile(0.9)))
    out["median_error"] = grouped["error"].median()
    return out.reset_index()
