"""Published end-to-end inference measurements as rows the request model can score
(``data/e2e-measurements.csv``, copied unchanged from the project's research list;
how to read each source: ``data/e2e-measurements.md``).

A row is mapped when its model config, GPU, dtypes and lengths are known to the
project; every other row is kept with the reason it is not scored. Tier ``A``/``B``
rows are fixed batches; tier ``C`` rows (a serving scheduler chose the batch) are
reported apart and are not scored by the fixed-batch request model.

Each mapped row is predicted by :func:`perfmodel.request.request` three ways: the
calibrated cost model, the pure roofline and the old flat catalog efficiencies.
"""

from __future__ import annotations

import functools
import io
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from perfmodel.errors import PerfmodelError

FILE = "e2e-measurements.csv"
TP_FILE = "inference-tp-measurements.csv"
#: the TP file's model and GPU labels -> the e2e file's (hub repo, published GPU label)
TP_MODELS = {"LLaMA 70B (Llama-2-70b per methodology text)": "meta-llama/Llama-2-70b-hf",
             "LLaMA 70B (Llama-2-70b)": "meta-llama/Llama-2-70b-hf", "Falcon 180B": "tiiuae/falcon-180B"}
TP_GPUS = {"H100 80GB HBM3": "H100 SXM 80GB", "H200 141GB HBM3": "H200 SXM 141GB", "A100-SXM4-80GB": "A100 80GB SXM"}
CONFIGS = "e2e-configs"

#: published GPU label -> catalog key, or None (not in the catalog: unscored)
GPU_KEYS = {
    "A100 80GB SXM": "a100-80gb-sxm",
    # premAI and NeMo say "A100 80GB" only; the SXM part is the one in DGX/cloud 8-GPU boxes
    "A100 80GB (form factor not stated)": "a100-80gb-sxm",
    "H100 SXM 80GB": "h100-sxm",
    "H100 80GB (form factor not stated)": "h100-sxm",
    "H200 SXM 141GB": "h200-sxm",
    "L40S": "l40s",
    "RTX 4090": "rtx-4090",
    "MI300X": "mi300x",
    "RTX 3090 Ti": None,
    "MI250X (1 GCD)": None,  # the catalog's MI250X is the two-GCD card
}

#: engine label prefix -> whether its decode loop runs without per-kernel host launches
#: (a compiled C++ runtime, or CUDA graphs), and why
ENGINES = {
    "TensorRT-LLM": (True, "C++ runtime of prebuilt engines"),
    "NVIDIA TensorRT-LLM": (True, "C++ runtime of prebuilt engines"),
    "NeMo Framework inference (TensorRT-LLM export)": (True, "TensorRT-LLM runtime"),
    "Optimum Nvidia": (True, "TensorRT-LLM runtime"),
    "NVIDIA NIM": (True, "TensorRT-LLM backend"),
    "LMDeploy": (True, "TurboMind C++ engine"),
    "vLLM": (True, "CUDA graphs for decode"),
    "gpt-fast": (True, "torch.compile mode=reduce-overhead (CUDA graphs)"),
    "llama.cpp": (True, "C++ runtime"),
    "ctranslate": (True, "CTranslate2 C++ runtime"),
    "exllamav2": (False, "Python generator loop; the README warns slow CPUs bottleneck it"),
    "ExLlamaV2": (False, "Python generator loop; the README warns slow CPUs bottleneck it"),
    "HF transformers": (False, "eager PyTorch: one host launch per kernel"),
    "DeepSpeed": (False, "eager PyTorch with injected kernels"),
    "AutoAWQ": (False, "eager PyTorch (transformers generate)"),
    "onnx": (False, "ONNX Runtime, one host launch per node"),
}

#: lengths a source does not state, and what is taken (batch-1 generation speed barely
#: depends on them); the row's ``assumed`` column says when one was used
UNSTATED_PROMPT = 16
UNSTATED_OUTPUT = 128

METRICS = {
    "tpot_ms": ("tpot_s", 1e-3),
    "ttft_ms": ("ttft_s", 1e-3),
    "prefill_ms": ("ttft_s", 1e-3),
    "e2e_latency_ms": ("e2e_latency_s", 1e-3),
    "output_tokens_per_s": ("output_tokens_per_s", 1.0),
    "tokens_per_s_per_gpu": ("output_tokens_per_s", 1.0),
    "output_tokens_per_s_per_gpu": ("output_tokens_per_s", 1.0),
    "total_tokens_per_s": ("total_tokens_per_s", 1.0),
}


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO((resources.files("perfmodel.hardware") / "data" / name).read_text(encoding="utf-8")))


def read() -> pd.DataFrame:
    """The e2e rows, then the fixed-batch rows of ``TP_FILE`` in the same columns (its
    perf-overview rows are serving runs: see ``data/inference-tp-measurements.md``)."""
    tp = _csv(TP_FILE)
    tp = tp[pd.to_numeric(tp["batch"], errors="coerce").notna()].copy()
    tp["hf_config_hint"] = tp["model"].map(TP_MODELS)
    tp["gpu"] = tp["gpu"].map(lambda g: TP_GPUS.get(g, g))
    tp["batch"] = tp["batch"].astype(float)
    tp["notes"] = "tier=B; " + tp["notes"].astype(str)
    tp = tp.drop(columns=[c for c in ("ep", "attn_dp") if c in tp])
    return pd.concat([_csv(FILE), tp], ignore_index=True)


def _weights(label) -> tuple[dict | None, str]:
    """The published weight format -> Scenario dtype fields, or None and why."""
    if not isinstance(label, str):
        return None, "weight dtype not stated"
    text = label.lower()
    if text in ("fp16", "bf16"):
        return {"weight_dtype": text, "act_dtype": text}, ""
    if text == "fp8":
        # TensorRT-LLM FP8: FP8 weights and GEMM inputs (w8a8, per-tensor scales), the
        # activations between kernels and the all-reduce in fp16 (the checkpoint's dtype)
        return {"weight_dtype": "fp8", "act_dtype": "fp16", "gemm_dtype": "fp8"}, ""
    if text.startswith("exl2"):
        return None, f"{label}: EXL2 mixes bit widths per layer; no dtype has that size"
    if "gguf q4_0" in text:  # 32 int4 weights + one fp16 scale = 4.5 bits
        return {"weight_dtype": "int4", "act_dtype": "fp16", "weight_group_size": 32}, ""
    if "gguf" in text:
        return None, f"{label}: the engine's GGUF format is not named"
    m = re.match(r"(int[48])", text)
    if not m:
        return None, f"{label}: unknown weight format"
    group = re.search(r"g(?:roup\s*)?(\d+)", text)
    if "awq" in text and not group:
        group_size = 128  # AutoAWQ's default q_group_size
    else:
        group_size = int(group.group(1)) if group else None
    return {"weight_dtype": m.group(1), "act_dtype": "fp16", "weight_group_size": group_size}, ""


def _engine(label: str) -> tuple[bool, str] | None:
    for prefix, value in ENGINES.items():
        if label.startswith(prefix):
            return value
    return None


def _config_files() -> dict[str, Path]:
    """Hub repo -> a shipped config: the presets, then ``data/e2e-configs``."""
    from perfmodel.presets import preset_path, registry

    out = {rec["hf_repo"]: preset_path(name) for name, rec in registry().items()}
    folder = Path(str(resources.files("perfmodel.hardware") / "data" / CONFIGS))
    for path in sorted(folder.glob("*.json")):
        out.setdefault(path.stem.replace("--", "/", 1), path)
    return out


#: repos whose config is not shipped but whose shapes equal one that is (same layers,
#: widths, heads, vocabulary), and the source of that equality
SAME_SHAPE = {
    "huggyllama/llama-7b": ("meta-llama/Llama-2-7b-hf", "LLaMA-1 7B: the Llama-2-7B shapes (6,738,415,616 params per the llama.cpp row)"),
    "huggyllama/llama-13b": ("meta-llama/Llama-2-13b-hf", "LLaMA-1 13B: the Llama-2-13B shapes"),
    "meta-llama/Llama-3.3-70B-Instruct": ("meta-llama/Llama-3.1-70B", "Llama 3.3 70B reuses the 3.1 70B architecture"),
}


@functools.cache
def _arch(repo: str):
    from perfmodel.hf_config import from_config, read_config_file

    files = _config_files()
    path = files.get(repo) or files.get(SAME_SHAPE.get(repo, ("",))[0])
    if path is None:
        return None
    try:
        return from_config(read_config_file(path), name=repo, source=str(path.name))
    except PerfmodelError:  # a config whose family perfmodel does not read (InternLM)
        return None


def rows(kind: str = "fixed") -> pd.DataFrame:
    """Every stored row with the model's inputs and ``reason`` ('' = scored): ``kind``
    ``fixed`` scores tier A/B rows (fixed batches) by the request model, ``serving``
    the tier C rows by the serving model."""
    frame = read()
    out = []
    for i, r in frame.iterrows():
        rec = r.to_dict()
        rec["row"] = i
        rec["tier"] = str(r["notes"])[5:6]
        rec["assumed"] = ""
        reason = ""
        repo = re.sub(r"\s*\(.*\)$", "", str(r["hf_config_hint"])) if isinstance(r["hf_config_hint"], str) else ""
        rec["repo"] = repo
        weights, why = _weights(r["weight_dtype"])
        dtype_note = ""
        if weights is None and kind == "serving" and not isinstance(r["weight_dtype"], str):
            # a serving benchmark that names no dtype ran the checkpoint as published
            weights, dtype_note = {"weight_dtype": "bf16", "act_dtype": "bf16"}, "weight dtype unstated: bf16 (the checkpoint's) taken"
        accelerator = GPU_KEYS.get(r["gpu"])
        engine = _engine(str(r["engine"]))
        if kind == "fixed" and rec["tier"] == "C":
            reason = "serving: a scheduler chose the batch (scored by --kind serving)"
        elif kind == "serving" and rec["tier"] != "C":
            reason = "fixed batch (scored by --kind fixed)"
        elif kind == "serving" and int(r["n_gpus"]) != 1:
            reason = f"{int(r['n_gpus'])} GPUs: serving on a parallel layout is not built yet (one GPU so far)"
        elif int(r["n_gpus"]) != _count(r["tp"]) * _count(r["pp"]):
            reason = f"n_gpus={int(r['n_gpus'])} is not tp*pp = {_count(r['tp'])}*{_count(r['pp'])}"
        elif kind == "serving" and (pd.isna(r["input_len"]) or pd.isna(r["output_len"])):
            reason = "prompt or output length not stated: a serving workload needs both"
        elif accelerator is None:
            reason = f"{r['gpu']} is not in the accelerator catalog"
        elif weights is None:
            reason = why
        elif engine is None:
            reason = f"engine {r['engine']!r} has no launch class"
        elif r["metric"] not in METRICS:
            reason = f"metric {r['metric']} is not predicted"
        elif _arch(repo) is None:
            reason = f"no shipped config perfmodel reads for {repo or r['model']}"
        if not reason:
            rec.update(weights)
            # unstated: an FP8 build's cache is FP8 (TensorRT-LLM's FP8 recipe, e2e-measurements.md), else the activations'
            kv = r["kv_dtype"] if isinstance(r["kv_dtype"], str) else weights.get("gemm_dtype", weights["act_dtype"])
            rec["kv_dtype"] = kv if kv in ("fp16", "bf16", "fp8") else weights["act_dtype"]
            rec["accelerator"] = accelerator
            rec["cuda_graphs"] = engine[0]
            notes = []
            if pd.isna(r["input_len"]) or r["input_len"] < 1:
                rec["input_len"] = UNSTATED_PROMPT if pd.isna(r["input_len"]) else 1
                notes.append(f"input_len {'unstated' if pd.isna(r['input_len']) else 'given as 0'}: {int(rec['input_len'])} taken")
            if pd.isna(r["output_len"]) or r["output_len"] < 1:
                rec["output_len"] = UNSTATED_OUTPUT if pd.isna(r["output_len"]) else 1
                notes.append(f"output_len {'unstated' if pd.isna(r['output_len']) else 'given as 0'}: {int(rec['output_len'])} taken")
            rec["assumed"] = "; ".join(notes + ([dtype_note] if dtype_note else []))
            arch = _arch(repo)
            limit = arch.max_position_embeddings
            if limit is not None and rec["input_len"] + rec["output_len"] > limit:
                reason = f"input + output = {int(rec['input_len'] + rec['output_len'])} exceeds the model's {limit} positions"
        rec["tp"], rec["pp"], rec["gpus"] = _count(r["tp"]), _count(r["pp"]), int(r["n_gpus"])
        rec["layout"] = "1 GPU" if rec["gpus"] == 1 else f"tp={rec['tp']}" + (f" pp={rec['pp']}" if rec["pp"] > 1 else "")
        rec["reason"] = reason
        rec["scored"] = not reason
        out.append(rec)
    return pd.DataFrame(out)


def _count(cell) -> int:
    """A tp/pp cell: blank means 1."""
    return 1 if pd.isna(cell) else int(cell)


def label(source: str) -> str:
    """A short name for a source (the first words of its citation)."""
    return re.split(r"[ (@,']", source.strip(), maxsplit=1)[0]


def _scenario(r):
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.options import Options
    from perfmodel.scenario import Scenario

    return Scenario(_arch(r["repo"]), Options(phase="decode"), batch=int(r["batch"]), weight_dtype=r["weight_dtype"],
                    act_dtype=r["act_dtype"], kv_dtype=r["kv_dtype"], gemm_dtype=_gemm(r), weight_group_size=_group(r),
                    accelerator=get_accelerator(r["accelerator"]))


def _gemm(r):
    g = r.get("gemm_dtype")
    return g if isinstance(g, str) else None


def _group(r):
    g = r.get("weight_group_size")
    return None if g is None or pd.isna(g) else int(g)


def measured_value(r) -> float:
    """The row's value in the model's unit (seconds, or tokens/s over the whole run)."""
    return float(r["value"]) * METRICS[r["metric"]][1]


def predicted_value(r, result: dict, prefix: str = "") -> float:
    """The request model's figure for the row's metric (``prefix``: roofline_/flat_)."""
    b, n, m = int(r["batch"]), int(r["input_len"]), int(r["output_len"])
    e2e = result[f"{prefix}e2e_latency_s"]
    metric = METRICS[r["metric"]][0]
    if metric == "output_tokens_per_s":
        per_gpu = r["metric"] in ("tokens_per_s_per_gpu", "output_tokens_per_s_per_gpu")
        return b * m / e2e / (int(r["gpus"]) if per_gpu else 1)
    if metric == "total_tokens_per_s":
        return b * (n + m) / e2e
    if metric == "tpot_s" and m == 1:
        return float("nan")
    return result[f"{prefix}{metric}"]


def time_error(frame: pd.DataFrame, column: str) -> np.ndarray:
    """``column / measured − 1`` on times: a rate's error is taken on the time it implies,
    so that negative always means too fast."""
    ratio = frame[column] / frame["measured"]
    return np.where(frame["metric"].str.contains("tokens_per_s"), 1 / ratio, ratio) - 1


def predict(frame: pd.DataFrame, params_for=None) -> pd.DataFrame:
    """Scored rows with ``measured``, and ``predicted`` (calibrated), ``roofline`` and
    ``flat`` beside each, and their errors ``predicted / measured − 1`` (for rates the
    error is taken on the implied time, so that −20% always means 20% too fast).
    ``params_for``: accelerator key -> CostParams (default: the catalog's)."""
    from perfmodel.cost import Fusion
    from perfmodel.request import request

    out = frame[frame["scored"]].copy()
    cols = {c: [] for c in ("measured", "predicted", "roofline", "flat", "fits")}
    for _, r in out.iterrows():
        sc = _scenario(r)
        params = params_for(r["accelerator"]) if params_for else None
        fusion = Fusion(cuda_graphs=bool(r["cuda_graphs"]))
        if r["gpus"] > 1:
            result = _parallel(sc, r, fusion, params)
        else:
            result = request(sc, int(r["input_len"]), int(r["output_len"]), fusion, params)
        cols["measured"].append(measured_value(r))
        cols["predicted"].append(predicted_value(r, result))
        cols["roofline"].append(predicted_value(r, result, "roofline_"))
        cols["flat"].append(predicted_value(r, result, "flat_"))
        cols["fits"].append(result["fits"])
    for c, v in cols.items():
        out[c] = v
    for c in ("predicted", "roofline", "flat"):
        out[f"{c}_error"] = time_error(out, c)
    return out


def _parallel(sc, r, fusion, params) -> dict:
    """A multi-GPU row: :func:`perfmodel.parallel.request` on its tp x pp layout; the
    roofline and flat predictors are single-GPU only (NaN here)."""
    from perfmodel.layout import Layout
    from perfmodel.parallel import request

    result = request(sc, Layout(tp=int(r["tp"]), pp=int(r["pp"])), int(r["input_len"]), int(r["output_len"]), fusion,
                     params=params)
    nan = float("nan")
    return {**result, **{f"{p}{k}": nan for p in ("roofline_", "flat_") for k in ("ttft_s", "tpot_s", "e2e_latency_s")}}


def single_gpu(frame: pd.DataFrame) -> pd.DataFrame:
    """The scored one-GPU rows: the only ones the cost model's engine terms are fitted to."""
    return frame[frame["scored"] & (frame["gpus"] == 1)]


def prepare(frame: pd.DataFrame) -> list:
    """For fitting: per scored row, a function of CostParams giving the calibrated
    prediction of its metric (the compiled step functions built once)."""
    from perfmodel.cost import Fusion
    from perfmodel.request import latency, seconds_of, timers

    out = []
    for _, r in single_gpu(frame).iterrows():
        sc = _scenario(r)
        fusion = Fusion(cuda_graphs=bool(r["cuda_graphs"]))
        n, m = int(r["input_len"]), int(r["output_len"])
        ts = timers(sc, n, m, fusion, sc.require_accelerator().cost)

        def f(params, sc=sc, ts=ts, fusion=fusion, n=n, m=m, r=r):
            result = latency(seconds_of(sc, ts, "calibrated", fusion, params), n, m)
            return predicted_value(r, result)

        out.append((r["accelerator"], f))
    return out


def held_out_params(source: str):
    """``accelerator key -> CostParams`` with the engine terms fitted without ``source``
    (stored by :mod:`perfmodel.hardware.calibrate`)."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.hardware.cost_data import params_for, stored

    data = stored()
    values = data.get("leave_one_source_out", {}).get(source)
    if values is None:
        return None
    held = json.loads(json.dumps(data))
    for name, v in values.items():
        held["defaults"][name] = {"value": v, "source": f"fitted without {label(source)}"}
    cache: dict = {}

    def params_for_key(key):
        if key not in cache:
            cache[key] = params_for(get_accelerator(key), held)
        return cache[key]

    return params_for_key


def scored(out_of_sample: bool = True) -> pd.DataFrame:
    """Every mapped row predicted (calibrated, roofline, flat) and, ``out_of_sample``,
    by the fit that left its source out (``loso``, ``loso_error``)."""
    frame = predict(rows())
    frame["study"] = frame["source"].map(label)
    if out_of_sample:
        frame["loso"] = np.nan
        for source in frame["source"].unique():
            params = held_out_params(source)
            if params is None:
                continue
            held = frame["source"] == source
            frame.loc[held, "loso"] = predict(frame[held], params)["predicted"].to_numpy()
        # multi-GPU rows are in no fit: a source with no one-GPU rows has no held-out fit,
        # and its in-sample prediction is already out of sample
        never_fitted = frame["loso"].isna() & (frame["gpus"] > 1)
        frame.loc[never_fitted, "loso"] = frame.loc[never_fitted, "predicted"]
        frame["loso_error"] = time_error(frame, "loso")
    frame["error"] = frame["predicted_error"]
    return frame


SUMMARY_KEYS = ("layout", "study", "engine", "gpu", "accelerator", "weight_dtype", "metric", "tier", "model", "batch")


def summarize(frame: pd.DataFrame, by=()) -> pd.DataFrame:
    """Median and 90th-percentile |error| per group: pure roofline, flat efficiencies,
    calibrated (in sample) and leave-one-source-out."""
    keys = list(by)
    unknown = [k for k in keys if k not in frame]
    if unknown:
        from perfmodel.errors import PerfmodelError

        raise PerfmodelError(f"--by {unknown[0]!r}: not a column (use row, or some of {', '.join(SUMMARY_KEYS)})")
    grouped = frame.assign(all="all").groupby(keys or ["all"], dropna=False, sort=True)
    out = grouped.size().rename("rows").to_frame()
    for name in ("roofline", "flat", "predicted", "loso"):
        col = f"{name}_error"
        if col in frame:
            label_ = "calibrated" if name == "predicted" else name
            out[f"{label_}_median_abs_error"] = grouped[col].apply(lambda x: float(x.dropna().abs().median()))
            out[f"{label_}_p90_abs_error"] = grouped[col].apply(lambda x: float(x.dropna().abs().quantile(0.9)))
            out[f"{label_}_median_error"] = grouped[col].apply(lambda x: float(x.dropna().median()))
    return out.reset_index()


ROW_COLUMNS = ("study", "engine", "model", "gpu", "accelerator", "layout", "weight_dtype", "kv_dtype", "batch", "input_len",
               "output_len", "metric", "value", "measured", "predicted", "error", "roofline", "roofline_error", "flat",
               "flat_error", "loso", "loso_error", "fits", "cuda_graphs", "assumed", "tier", "row", "confidence")


def report(by: str = "study", *, out_of_sample: bool = True, unmapped: bool = False, kind: str = "fixed") -> pd.DataFrame:
    """``validate e2e --published``: a summary per ``by`` (comma-separated keys, or
    ``row``); ``unmapped``: the rows that are not scored, with the reason; ``kind``:
    ``fixed`` (tier A/B, the request model) or ``serving`` (tier C, the serving model)."""
    if kind == "serving":
        if unmapped:
            frame = rows("serving")
            frame = frame[~frame["scored"] & (frame["tier"] == "C")]
            return frame[["row", "source", "engine", "model", "gpu", "n_gpus", "weight_dtype", "metric", "tier", "reason"]]
        frame = scored_serving()
        if by == "row":
            return frame[[c for c in SERVING_COLUMNS if c in frame]].reset_index(drop=True)
        return summarize(frame, [k.strip() for k in by.split(",") if k.strip() and k.strip() != "all"])
    if unmapped:
        frame = rows()
        frame = frame[~frame["scored"]]
        return frame[["row", "source", "engine", "model", "gpu", "n_gpus", "weight_dtype", "metric", "tier", "reason"]]
    frame = scored(out_of_sample)
    if by == "row":
        return frame[[c for c in ROW_COLUMNS if c in frame]].reset_index(drop=True)
    keys = [k.strip() for k in by.split(",") if k.strip() and k.strip() != "all"]
    # multi-GPU rows are always reported apart from the one-GPU rows
    return summarize(frame.assign(gpus_kind=np.where(frame["gpus"] > 1, "multi-GPU (tp/pp)", "1 GPU")),
                     ["gpus_kind", *keys])


# ----------------------------------------------------------------- serving rows (tier C)

#: the engine settings a serving source ran with, and why (the serving model's options)
SERVING_ENGINES = {
    "TensorRT-LLM": ({"chunk_tokens": 8192, "kv_policy": "reserve", "memory_fraction": 0.9, "memory_of": "free"},
                     "trtllm-bench: in-flight batching with a token budget per step (max_num_tokens 8192 taken), "
                     "'Guaranteed No Evict' reserves each request's KV, kv_cache_free_gpu_mem_fraction 0.9"),
    "vLLM": ({"chunk_tokens": 2048, "kv_policy": "on-demand", "memory_fraction": 0.9, "memory_of": "total"},
             "vLLM defaults: gpu_memory_utilization 0.9, max_num_batched_tokens 2048 with chunked prefill, blocks on demand"),
}


def _serving_engine(label: str):
    for prefix, value in SERVING_ENGINES.items():
        if label.startswith(prefix):
            return value
    return None


@functools.cache
def _step(repo, accelerator, weight_dtype, act_dtype, kv_dtype, gemm_dtype, group, cuda_graphs):
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.cost import Fusion
    from perfmodel.options import Options
    from perfmodel.scenario import Scenario
    from perfmodel.serving import single_gpu

    sc = Scenario(_arch(repo), Options(phase="decode"), weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype,
                  gemm_dtype=gemm_dtype, weight_group_size=group, accelerator=get_accelerator(accelerator))
    return single_gpu(sc, Fusion(cuda_graphs=cuda_graphs))


def predict_serving(frame: pd.DataFrame) -> pd.DataFrame:
    """Scored tier C rows with ``measured``, ``predicted`` (the serving model: saturated
    when the batch is not stated, else closed loop at the batch as concurrency) and
    ``predicted_error``; ``binds`` and the engine settings taken beside each."""
    from perfmodel.serving import Engine, Workload, serve

    out = frame[frame["scored"]].copy()
    cols = {c: [] for c in ("measured", "predicted", "binds", "concurrency", "max_concurrency", "fits", "engine_settings")}
    for _, r in out.iterrows():
        settings, why = _serving_engine(str(r["engine"])) or ({}, "defaults")
        step = _step(r["repo"], r["accelerator"], r["weight_dtype"], r["act_dtype"], r["kv_dtype"], _gemm(r), _group(r),
                     bool(r["cuda_graphs"]))
        work = Workload.fixed(int(r["input_len"]), int(r["output_len"]))
        concurrency = None if pd.isna(r["batch"]) else float(r["batch"])
        row = serve(step, work, Engine(**settings), concurrency=concurrency)
        metric = METRICS[r["metric"]][0]
        predicted = {"output_tokens_per_s": row["output_tokens_per_s"], "total_tokens_per_s": row["total_tokens_per_s"],
                     "ttft_s": row["ttft_s"], "tpot_s": row["tpot_s"], "e2e_latency_s": row["e2e_latency_s"]}[metric]
        cols["measured"].append(measured_value(r))
        cols["predicted"].append(predicted)
        cols["binds"].append(row["binds"])
        cols["concurrency"].append(row["running"])
        cols["max_concurrency"].append(row["max_concurrency"])
        cols["fits"].append(row["fits"])
        cols["engine_settings"].append(why)
    for c, v in cols.items():
        out[c] = v
    out["predicted_error"] = time_error(out, "predicted")
    return out


def scored_serving() -> pd.DataFrame:
    """Every mapped tier C row predicted by the serving model. Nothing is fitted to
    these rows and their sources are outside the cost model's fit, so the in-sample
    figures are out of sample: ``loso`` = ``predicted``."""
    frame = predict_serving(rows("serving"))
    frame["study"] = frame["source"].map(label)
    frame["loso"], frame["loso_error"] = frame["predicted"], frame["predicted_error"]
    frame["error"] = frame["predicted_error"]
    return frame


SERVING_COLUMNS = ("study", "engine", "model", "gpu", "weight_dtype", "kv_dtype", "batch", "input_len", "output_len",
                   "metric", "value", "measured", "predicted", "error", "loso", "loso_error", "binds", "concurrency",
                   "max_concurrency", "fits", "engine_settings", "assumed", "row")
