"""Published training runs (``data/training-measurements.csv``, notes in
``data/training-measurements.md``) scored by ``perfmodel train``'s iteration model.

A row is scored when its model config, GPU, layout and batch are known; every other row
keeps the reason. Only convention-free metrics are scored: ``tokens_per_s_per_gpu``,
``tokens_per_s`` and ``iteration_s`` (MFU and TFLOP/s depend on each source's FLOP
count). The error is ``predicted/measured − 1`` on the time (for a rate, on the time it
implies: negative = too fast). The training model has no parameter fitted to these rows
(its terms come from the single-GPU inference fit and the nccl-tests fit), so every row is
out of sample: the leave-one-source-out column equals the in-sample one, and says so.
"""

from __future__ import annotations

import functools
import io
import re
from importlib import resources

import numpy as np
import pandas as pd

from perfmodel.errors import PerfmodelError

FILE = "training-measurements.csv"
#: published GPU label prefix -> catalog key (A100-class Ampere: MegaScale's cluster)
GPUS = {"H100": "h100-sxm", "B200": "b200", "GB200": "gb200", "A100": "a100-80gb-sxm", "NVIDIA Ampere": "a100-80gb-sxm"}
#: Megatron-Bridge recipe names -> shipped config (preset or e2e-configs file)
MODELS = {"LLAMA3_70B": "llama-3.1-70b", "LLAMA3_8B": "llama-3-8b", "LLAMA3.1_405B": "meta-llama--Llama-3.1-405B",
          "DeepSeekV3": "deepseek-v3", "Qwen3_30B_a3B": "qwen3-30b-a3b"}
METRICS = {"tokens_per_s_per_gpu": "tokens_per_s_per_gpu", "tokens_per_s": "tokens_per_s", "iteration_s": "step_time_s"}
_GPT = re.compile(r"h=(\d+) L=(\d+)(?: heads=(\d+))?(?: V=(\d+))?")


def read() -> pd.DataFrame:
    return pd.read_csv(io.StringIO((resources.files("perfmodel.hardware") / "data" / FILE).read_text(encoding="utf-8")))


@functools.cache
def _arch(label: str, seq: int):
    from perfmodel.hf_config import from_config, read_config_file
    from perfmodel.presets import preset_path

    m = _GPT.search(label)
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


def rows() -> pd.DataFrame:
    """Every row with the iteration model's inputs and ``reason`` ('' = scored)."""
    out = []
    for i, r in read().iterrows():
        rec = r.to_dict()
        rec["row"] = i
        reason = ""
        seq = _count(r["seq_len"], 2048)
        arch = _arch(str(r["model"]), seq)
        gpu = _gpu(str(r["gpu"]))
        if r["metric"] not in METRICS:
            reason = f"metric {r['metric']}: depends on the source's FLOP convention (tokens/s per GPU is scored)"
        elif gpu is None:
            reason = f"{r['gpu']} is not in the accelerator catalog"
        elif arch is None:
            reason = f"no shipped config for {r['model']}"
        elif pd.isna(r["global_batch"]) or pd.isna(r["tp"]):
            reason = "global batch or layout not stated"
        elif "NVFP4" in str(r["dtype"]).upper():
            reason = "NVFP4: no fp4 peak in the catalog"
        elif "Megatron-Bridge" in str(r["source"]) and "not stated" in str(r["dtype"]):
            # the archive's 25.09 table has no precision column; its runs are FP8 or BF16
            reason = "precision not stated (Megatron-Bridge 25.09 table): the FP8 and BF16 peaks differ 2x"
        rec.update(accelerator=gpu, arch=arch, seq=seq, reason=reason, scored=not reason)
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
    - Llama-3.1-405B on Megatron-Bridge: the recipe sets
      ``account_for_embedding_in_pipeline_split`` and ``..._loss_...`` (recipes/llama/llama3.py
      ``llama31_405b_pretrain_config``).
    - TP communication overlap: Megatron-Bridge's Llama recipes and performance scripts set
      ``tp_comm_overlap`` when tp > 1 (``CommOverlapConfig(tp_comm_overlap=tp > 1)``;
      llama3_70b/llama31_405b: userbuffers configs); MegaScale's own system overlaps TP, PP
      and DP communication (Jiang et al. 2024 §3.2, Table 3 "TP/PP/DP overlap"); Megatron-LM
      rows run its defaults (no TP overlap).
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
        "_overlap": {"tp_comm": (bridge or megascale) and tp > 1,
                     "p2p": not ("Korthikanti" in str(r["source"]) or megatron_baseline),
                     "grad_reduce": not megatron_baseline, "param_gather": not megatron_baseline,
                     "ep_comm": bridge and str(r["model"]).startswith("DeepSeekV3") and str(r["gpu"]).startswith("H100")},
    }
    if bridge and str(r["model"]).startswith("LLAMA3.1_405B"):
        kw.update(embedding_in_split=True, loss_in_split=True)
    return kw


def predict_row(r) -> float:
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.options import Options
    from perfmodel.scenario import Scenario
    from perfmodel.train import Overlap, iteration, make_layout

    kw = _layout_kwargs(r)
    recompute, overlap = kw.pop("_recompute"), Overlap(**kw.pop("_overlap"))
    acc = get_accelerator(r["accelerator"])
    dtype = _dtype(r["dtype"])
    sc = Scenario(r["arch"], Options(phase="train", recompute=recompute, optimizer="megatron-bf16"), seq=int(r["seq"]),
                  act_dtype=dtype, kv_dtype=dtype, accelerator=acc)
    layout = make_layout(r["arch"], acc, **kw)
    return iteration(sc, layout, overlap=overlap)[METRICS[r["metric"]]]


def scored() -> pd.DataFrame:
    """The scored rows with ``predicted``, ``measured``, ``error`` (and ``loso_error``,
    equal: no parameter is fitted to these rows); a row whose layout cannot run gets
    its reason instead."""
    frame = rows()
    frame = frame[frame["scored"]].copy()
    predicted, reasons = [], []
    for _, r in frame.iterrows():
        try:
            predicted.append(predict_row(r))
            reasons.append("")
        except PerfmodelError as exc:
            predicted.append(np.nan)
            reasons.append(str(exc))
    frame["predicted"] = predicted
    frame["reason"] = reasons
    frame["measured"] = frame["value"].astype(float)
    ratio = frame["predicted"] / frame["measured"]
    frame["error"] = np.where(frame["metric"] == "iteration_s", ratio, 1 / ratio) - 1
    frame["loso_error"] = frame["error"]
    frame["study"] = frame["source"].str.extract(r"^(\S+(?: et al\.)? ?\S*)")[0]
    frame["model_size"] = frame["arch"].map(lambda a: a.name)
    frame["layout"] = [f"tp{int(t)} pp{int(p)} ep{_count(e)}" for t, p, e in zip(frame["tp"], frame["pp"], frame["ep"])]
    return frame


KEYS = ("study", "gpu", "accelerator", "model_size", "layout", "metric", "dtype")


def report(by: str = "study") -> pd.DataFrame:
    """``validate training --published``: median / p90 |error| per ``by`` keys (or ``row``)."""
    frame = scored()
    if by == "row":
        return frame[["row", "study", "model", "gpu", "n_gpus", "tp", "pp", "dp", "ep", "cp", "global_batch", "seq",
                      "metric", "measured", "predicted", "error", "loso_error", "reason"]].reset_index(drop=True)
    keys = [k.strip() for k in by.split(",") if k.strip() and k.strip() != "all"]
    unknown = [k for k in keys if k not in frame]
    if unknown:
        raise PerfmodelError(f"--by {unknown[0]!r}: not a column (use row, or some of {', '.join(KEYS)})")
    ok = frame[frame["reason"] == ""]
    grouped = ok.assign(all="all").groupby(keys or ["all"], dropna=False)
    out = grouped.size().rename("rows").to_frame()
    for col, label in (("error", "in_sample"), ("loso_error", "leave_one_source_out")):
        out[f"{label}_median_abs_error"] = grouped[col].apply(lambda x: float(x.abs().median()))
        out[f"{label}_p90_abs_error"] = grouped[col].apply(lambda x: float(x.abs().quantile(0.9)))
    out["median_error"] = grouped["error"].median()
    return out.reset_index()
