"""Published attention-kernel measurements as rows the model can score.

Two files in ``hardware/data`` (provenance in ``attention-measurements.md``):
``attention-measurements.csv``, the project's list copied unchanged from
``shared/data``, and ``attention-measurements-extra.csv``, the further measurements
of the research notes (figures.md §8) with a confidence per row.

Each row's time is recovered with its source's own convention, never the model's:

- ``measured_ms`` given (Flash-Decoding table, FA3 Table 2, the third-party report): that time.
- TFLOP/s only (FlashAttention papers, tritonbench; hw-notes §3): ``time = FLOPs / rate``
  with ``FLOPs = 4·B·Sq·Skv·H·D``, halved when causal, ×2.5 backward, ×3.5 forward+backward.
- GB/s only (FlashInfer's utilisation, "bytes read by the kernel"): ``time = bytes / rate``
  with the K and V bytes ``2·B·Skv·H_kv·D·2`` (fp16).

Decode rows (one query token) are scored as non-causal: the query sees every key.
"""

from __future__ import annotations

import functools
import io
from dataclasses import replace
from importlib import resources

import pandas as pd

from perfmodel.errors import PerfmodelError

FILES = {"main": "attention-measurements.csv", "extra": "attention-measurements-extra.csv"}

#: published GPU label -> catalog key; None: not in the catalog (row left unscored)
GPU_KEYS = {
    "A100 80GB SXM4": "a100-80gb-sxm",
    "A100 PCIe 80GB": "a100-80gb-pcie",
    # The Flash-Decoding blog does not say which A100. Taken as the 80 GB SXM part: the
    # same authors' FA2 benchmarks ran on "A100 80GB SXM4", and `a100` is its catalog
    # alias. On the 40 GB part (1555 GB/s) its roofline would be 31% slower.
    "A100 (variant not stated)": "a100-80gb-sxm",
    "H100 80GB SXM5": "h100-sxm",
    "H100 SXM 80GB": "h100-sxm",
    "H100 80GB HBM3 (SXM)": "h100-sxm",
    "H100 (SKU not stated)": "h100-sxm",  # tritonbench commit: FA3 runs only on Hopper; SXM assumed
    "RTX 4090": "rtx-4090",
    "RTX 6000 Ada": None,
}

#: kernel name -> (family, implementation the model predicts it with)
KERNELS = {
    "FlashAttention-2": ("fa2", "fused"),
    "FlashAttention v2.0.9": ("fa2", "fused"),  # FA2's own kernel on decode shapes: no split-KV
    "FlashAttention 2.4.2": ("flash-decoding", "fused"),  # FA2 >= 2.2 splits the KV on decode
    "FlashAttention (v1)": ("fa1", "fused"),
    "FlashAttention-3": ("fa3", "fused"),
    "FlashAttention-3 (tritonbench flash_v3)": ("fa3", "fused"),
    "cuDNN 9.1.1": ("cudnn", "fused"),
    "Triton FA2 (H100 instr.)": ("triton", "fused"),
    "Triton (FP8)": ("triton", "fused"),
    "Triton tutorial FA2 (tritonbench)": ("triton", "fused"),
    # the report's own Triton kernel (Llama-3-8B serving shapes), not the tutorial kernel above
    "Triton 3.5.1 (third-party kernel)": ("triton-report", "fused"),
    "PyTorch standard": ("naive", "naive"),  # QK^T, softmax, PV as separate kernels
    "PyTorch eager": ("naive", "naive"),
    "Flash-Decoding (split-KV)": ("flash-decoding", "fused"),
    "FlashInfer 0.0.1 (split-KV)": ("flashinfer", "fused"),
    "FlashInfer 0.6.6": ("flashinfer", "fused"),
    "FlashInfer 0.0.1 (no split-KV)": ("flashinfer-nosplit", "fused"),
}

#: short names of the sources, for tables (the full citation stays in ``source``)
SOURCE_LABELS = {
    "FlashAttention-2 paper (Dao 2023, arXiv 2307.08691) Fig.4 = Dao-AILab/flash-attention README assets/flash2_a100_fwd_bwd_benchmark.png": "FA2 paper Fig.4 (A100)",
    "FlashAttention-2 paper (arXiv 2307.08691) Fig.7 = Dao-AILab/flash-attention README assets/flash2_h100_fwd_bwd_benchmark.png": "FA2 paper Fig.7 (H100)",
    "FlashAttention-2 paper (arXiv 2307.08691) Sec 4": "FA2 paper Sec 4 text",
    "FlashAttention-2 paper (arXiv 2307.08691) Sec 4.1": "FA2 paper Sec 4.1 text",
    "FlashAttention-3 paper (Shah et al. 2024, arXiv 2407.08608) Fig.5 = Dao-AILab/flash-attention README assets/flash3_fp16_fwd.png": "FA3 paper Fig.5 (fwd)",
    "Flash-Decoding blog (Dao, Haziza, Massa, Sizov; PyTorch blog / crfm.stanford.edu 2023-10-12), micro-benchmark table": "Flash-Decoding blog",
    "FlashInfer blog 'Accelerating Self-Attentions for LLM Serving with FlashInfer' (flashinfer.ai 2024-02-02; flashinfer-ai/flashinfer-ai.github.io _posts/2024-01-03-introduce-flashinfer.md) Fig.5": "FlashInfer blog Fig.5",
    "FlashAttention-3 paper (Shah et al. 2024, arXiv 2407.08608) Table 2": "FA3 paper Table 2",
    "FlashAttention-3 paper (Shah et al. 2024, arXiv 2407.08608) Fig.6 (backward), third-party transcription of the figure image": "FA3 paper Fig.6 (bwd)",
    "FlashAttention-3 paper (Shah et al. 2024, arXiv 2407.08608) Fig.9 (FP8 forward), third-party transcription of the figure image": "FA3 paper Fig.9 (fp8)",
    "pytorch/benchmark commit ff65cb675209d2308f7d27c6920af8a32de9aa90 (tritonbench, #2391), commit message": "tritonbench commit ff65cb6",
    "Third-party report 'FlashInfer vs Triton Attention on H100: Where the Cycles Actually Go' (GitHub markdown, author unknown)": "third-party H100 report",
}
#: FLOPs of a pass as a multiple of the forward FLOPs (FlashAttention papers, hw-notes §3)
PASS_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}
#: the published dtype label -> the model's dtype (fp16 and bf16 have the same peaks)
DTYPES = {"fp16/bf16": "bf16", "fp16": "fp16", "bf16": "bf16", "fp8": "fp8"}
SHAPE = ("batch", "seqlen_q", "seqlen_kv", "n_heads", "n_kv_heads", "head_dim")


def read(which: str = "main") -> pd.DataFrame:
    """One data file as stored (``main`` or ``extra``)."""
    text = (resources.files("perfmodel.hardware") / "data" / FILES[which]).read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])


def source_seconds(row) -> tuple[float, str]:
    """The row's time in seconds by its source's convention, and which column gave it."""
    if pd.notna(row["measured_ms"]):
        return float(row["measured_ms"]) / 1e3, "measured_ms"
    b, sq, skv, h, hkv, d = (int(row[c]) for c in SHAPE)
    if pd.notna(row["measured_tflops"]):
        flops = 4 * b * sq * skv * h * d * PASS_FACTOR[_pass(row["phase"])] * (0.5 if _causal(row["causal"]) else 1.0)
        return flops / (float(row["measured_tflops"]) * 1e12), "measured_tflops"
    if pd.notna(row["measured_gbps"]):
        return 2 * b * skv * hkv * d * 2 / (float(row["measured_gbps"]) * 1e9), "measured_gbps"
    raise PerfmodelError(f"published row {row['source']!r}: no time, TFLOP/s or GB/s")


def _pass(phase: str) -> str:
    return "fwd" if phase == "decode" else phase


def _causal(value) -> bool:
    return value is True or str(value).lower() == "true"


def rows(which: tuple[str, ...] = ("main", "extra")) -> pd.DataFrame:
    """Every stored row, one per measurement, with the model's inputs beside it.

    Columns: file, row (0-based line in its file), study (short source name), source,
    gpu, accelerator (catalog key), kernel, family, impl, phase, pass, regime (prefill
    or decode), dtype, the shape (batch, heads, kv_heads, head_dim, seq_q, seq_kv,
    causal), measured_s, measured_from, confidence, scored, reason (why a row is not
    scored), notes.
    """
    out = []
    for name in which:
        frame = read(name)
        for i, row in frame.iterrows():
            row = row.to_dict()
            row["causal"] = _causal(row["causal"]) and row["phase"] != "decode"
            rec = dict(file=name, row=i, study=SOURCE_LABELS.get(row["source"], row["source"]), source=row["source"],
                       gpu=row["gpu"], kernel=row["kernel"],
                       phase=row["phase"], pass_=_pass(row["phase"]),
                       regime="decode" if row["phase"] == "decode" else "prefill",
                       dtype=DTYPES[row["dtype"]], causal=row["causal"],
                       confidence=row.get("confidence", "see notes") or "see notes", notes=row["notes"])
            if row["gpu"] not in GPU_KEYS or row["kernel"] not in KERNELS:
                raise PerfmodelError(f"{FILES[name]} row {i}: no catalog key for {row['gpu']!r} or family for {row['kernel']!r}")
            rec["accelerator"] = GPU_KEYS[row["gpu"]]
            rec["family"], rec["impl"] = KERNELS[row["kernel"]]
            shaped = all(pd.notna(row[c]) for c in SHAPE)
            if shaped:
                rec.update(batch=int(row["batch"]), heads=int(row["n_heads"]), kv_heads=int(row["n_kv_heads"]),
                           head_dim=int(row["head_dim"]), seq_q=int(row["seqlen_q"]), seq_kv=int(row["seqlen_kv"]))
                rec["measured_s"], rec["measured_from"] = source_seconds(row)
            if not shaped:
                rec["reason"] = "no shape: a best-case 'up to' figure from the text"
            elif rec["accelerator"] is None:
                rec["reason"] = f"{row['gpu']} is not in the accelerator catalog"
            else:
                rec["reason"] = ""
            rec["scored"] = not rec["reason"]
            out.append(rec)
    frame = pd.DataFrame(out).rename(columns={"pass_": "pass"})
    for c in ("batch", "heads", "kv_heads", "head_dim", "seq_q", "seq_kv"):
        frame[c] = frame[c].astype("Int64")
    return frame


# ------------------------------------------------------------- scoring and fit

#: the rows the stored fit is trained on; the extra file stays out of sample
TRAINING = ("main",)
FIT_NOTES = ("Trained on every scored row of hardware/data/attention-measurements.csv (the project's list); "
             "hardware/data/attention-measurements-extra.csv (figures.md §8) is held out. Groups are "
             "family/regime@accelerator (hardware/published.py KERNELS and GPU_KEYS); a call whose group is "
             "absent gets the catalog defaults. Decode rows are non-causal; the Flash-Decoding A100 is taken "
             "as a100-80gb-sxm.")


def accelerators(frame: pd.DataFrame) -> dict:
    """Catalog accelerator per key named in ``frame``."""
    from perfmodel.hardware.catalog import get_accelerator

    return {key: get_accelerator(key) for key in frame["accelerator"].dropna().unique()}


def predicted(which: tuple[str, ...] = ("main", "extra")) -> pd.DataFrame:
    """Every stored row with the pure roofline and catalog predictions beside it
    (computed once per process: the files are package data)."""
    return _predicted(tuple(which)).copy()


@functools.cache
def _predicted(which: tuple[str, ...]) -> pd.DataFrame:
    from perfmodel.hardware.attention_scoring import predict_rows

    frame = rows(which)
    return predict_rows(frame, accelerators(frame))


def scored(fit=None, *, out_of_sample: bool = False, rows_: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every stored row (or the :func:`predicted` ``rows_``) with pure, catalog and
    calibrated predictions (``fit``: default the stored one) and, with
    ``out_of_sample``, leave-one-source-out predictions."""
    from perfmodel.hardware.attention_fit import load_fit
    from perfmodel.hardware.attention_scoring import calibrate, leave_one_out

    frame = predicted() if rows_ is None else rows_
    accs = accelerators(frame)
    out = calibrate(frame, fit if fit is not None else load_fit(), accs)
    return leave_one_out(out, accs) if out_of_sample else out


def train(rows_: pd.DataFrame | None = None):
    """Fit the calibrated model on the training rows (:data:`TRAINING`) of the
    :func:`predicted` ``rows_`` (default: all stored rows) and record, as
    provenance, its out-of-sample errors: on the held-out file, leave-one-source-out
    over all rows, and FA2-on-A100 parameters applied to FA3 on H100."""
    from perfmodel.hardware.attention_scoring import calibrate, fit_rows, leave_one_out, summarize, transfer

    frame = predicted() if rows_ is None else rows_
    accs = accelerators(frame)
    training = frame[frame["file"].isin(TRAINING) & frame["predicted_s"].notna()]
    fit = fit_rows(training, accs, trained_on=[f"hardware/data/{FILES[f]}" for f in TRAINING], notes=FIT_NOTES)
    scored_rows = leave_one_out(calibrate(frame, fit, accs), accs)

    def errors(frame, column):
        s = summarize(frame)
        return {"rows": int(s["rows"].iloc[0]), "median_abs_error": round(float(s[f"{column}median_abs_error"].iloc[0]), 4),
                "p90_abs_error": round(float(s[f"{column}p90_abs_error"].iloc[0]), 4)}

    held_out = scored_rows[~scored_rows["file"].isin(TRAINING)]
    moved = transfer(scored_rows, fit, "fa2/prefill@a100-80gb-sxm", "fa3/prefill@h100-sxm")
    extra = {
        "training_rows": int(len(training)),
        "out_of_sample": {
            "held_out_file_calibrated": errors(held_out, "calibrated_"),
            "held_out_file_calibrated_seen_groups": errors(held_out[held_out["in_fit"]], "calibrated_"),
            "held_out_file_pure_roofline": errors(held_out, ""),
            "leave_one_source_out_all_rows": errors(scored_rows, "loso_"),
            "leave_one_source_out_seen_groups": errors(scored_rows[scored_rows["loso_seen"]], "loso_"),
            "fa2_a100_params_on_fa3_h100_rows": errors(moved, "transfer_"),
        },
        "in_sample_training_rows_calibrated": errors(scored_rows[scored_rows["file"].isin(TRAINING)], "calibrated_"),
    }
    return replace(fit, extra=extra)
