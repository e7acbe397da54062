"""Time ``torch.nn.functional.scaled_dot_product_attention`` over a grid of shapes and
set the model's prediction (:func:`perfmodel.kernels.predict`, the one ``perfmodel
attention`` uses) beside each measurement.

- GQA runs through ``enable_gqa=True`` (K/V keep their ``kv_heads``; nothing is repeated),
  so the kernel reads the bytes the model counts.
- Prefill is square (``seq_q = seq_kv``) with ``is_causal`` as the case says. Decode is
  one query against ``seq_kv`` cached keys with ``is_causal=False``: SDPA aligns its
  causal mask top-left, so ``is_causal=True`` would let the query see only the first key;
  the last token of a sequence sees every key, which is the model's non-causal count.
- The backend is the first that runs when each backend enabled in torch is tried alone
  (``sdpa_kernel``) in torch's priority order; the case is then timed under that backend
  alone, so the recorded backend is the one timed. The math backend is predicted as
  the naive implementation (scores written to memory), the others as fused.
- Timing: :func:`perfmodel.hardware.timing.time_callable` (CUDA events, L2 flushed before each call
  on a GPU; ``perf_counter_ns`` on CPU), median seconds per call, random inputs.
- Each row carries its provenance (device, driver, torch, CUDA, date) and the roof it
  was predicted against, so :func:`rescore` can redo the predictions without torch.

torch is imported inside the functions that need it, never at module import.
"""

from __future__ import annotations

import io

import math
import os
import sys
from collections.abc import Iterable

import pandas as pd

from perfmodel.hardware.accelerator import Accelerator
from perfmodel.errors import PerfmodelError
from perfmodel.kernels import AttentionCall

GRIDS = ("tiny", "cpu", "gpu")
#: columns a summary may group by (those present in the rows)
SUMMARY_KEYS = ("study", "source", "file", "kernel", "family", "gpu", "accelerator", "head_dim", "phase", "pass", "regime",
                "dtype", "causal", "confidence", "group", "in_fit", "loso_seen", "backend", "device_name")
#: time_callable settings per grid (GPU calls are timed one by one with a cold L2)
TIMING = {
    "tiny": dict(warmup=1, trials=3, min_time_s=0.002),
    "cpu": dict(warmup=1, trials=5, min_time_s=0.02),
    "gpu": dict(warmup=3, trials=10, min_time_s=0.05, flush_l2=True),
}
#: the largest B·H·Sq·Skv for which the float64 reference check runs
REFERENCE_LIMIT = 2**24
#: SDPBackend name -> (family, model implementation) on each device kind
FAMILIES = {
    ("cuda", "FLASH_ATTENTION"): ("fa2", "fused"),  # PyTorch's flash backend is FlashAttention-2
    ("cuda", "EFFICIENT_ATTENTION"): ("mem-efficient", "fused"),
    ("cuda", "CUDNN_ATTENTION"): ("cudnn", "fused"),
    ("cuda", "MATH"): ("naive", "naive"),
    ("cpu", "FLASH_ATTENTION"): ("cpu-flash", "fused"),
    ("cpu", "MATH"): ("naive", "naive"),
}
#: PyTorch's default backend priority (torch._C._get_sdp_priority_order, torch 2.5+)
DEFAULT_PRIORITY = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH", "CUDNN_ATTENTION")


def _prefill(dtypes, head_dims, seqs, hidden, tokens, passes, gqa=None):
    """Square prefill cases: ``hidden / D`` heads, ``tokens / S`` sequences (the
    FlashAttention papers' benchmark shapes), causal and not."""
    for dtype in dtypes:
        for d in head_dims:
            heads = hidden // d
            kv = heads // gqa if gqa else heads
            for s in seqs:
                for causal in (False, True):
                    for p in passes:
                        yield AttentionCall(max(1, tokens // s), heads, kv, d, s, s, causal, dtype, p)


def _decode(dtypes, batches, lengths, heads, kv_heads, head_dim, max_tokens):
    for dtype in dtypes:
        for b in batches:
            for s in lengths:
                if b * s <= max_tokens:
                    yield AttentionCall(b, heads, kv_heads, head_dim, 1, s, False, dtype, "fwd")


def grid(name: str) -> list[AttentionCall]:
    """The cases of a named grid: ``tiny`` (tests, about a second on a CPU), ``cpu``
    (seconds), ``gpu`` (H100-sized: prefill 512 to 16k, decode 1k to 128k cached)."""
    k = 1024
    if name == "tiny":
        return [AttentionCall(1, 2, 2, 64, 64, 64, True, "fp32", "fwd"),
                AttentionCall(1, 2, 2, 64, 64, 64, False, "fp32", "fwd_bwd"),
                AttentionCall(1, 4, 2, 64, 1, 256, False, "fp32", "fwd")]
    if name == "cpu":
        return [*_prefill(("fp32",), (64, 128), (128, 256, 512), 256, 512, ("fwd", "fwd_bwd")),
                *_prefill(("bf16",), (64,), (128, 256), 256, 256, ("fwd",)),
                *_decode(("fp32", "bf16"), (1,), (k, 4 * k, 16 * k), 8, 2, 128, 16 * k)]
    if name == "gpu":
        seqs = (512, k, 2 * k, 4 * k, 8 * k, 16 * k)
        lengths = tuple(2**i * k for i in range(8))  # 1k .. 128k
        return [*_prefill(("bf16", "fp16"), (64, 128, 256), seqs, 2048, 16 * k, ("fwd", "fwd_bwd")),
                *_prefill(("bf16",), (128,), seqs, 4096, 16 * k, ("fwd", "fwd_bwd"), gqa=4),
                *_decode(("bf16",), (1, 16, 64), lengths, 32, 8, 128, 2 * 1024 * k),
                *_decode(("bf16",), (1,), lengths, 32, 32, 128, 128 * k)]
    raise PerfmodelError(f"attention bench: unknown grid {name!r} (choose from {', '.join(GRIDS)})")


# ------------------------------------------------------------------- one case


def _torch_dtype(torch, dtype):
    try:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise PerfmodelError(f"attention bench: dtype {dtype!r} cannot be timed (fp32, bf16, fp16)") from None


def _inputs(torch, call: AttentionCall, device, requires_grad: bool):
    """Random (never zero) Q (B, H, Sq, D), K and V (B, H_kv, Skv, D)."""
    dt = _torch_dtype(torch, call.dtype)
    q = torch.randn(call.batch, call.heads, call.seq_q, call.head_dim, device=device, dtype=dt, requires_grad=requires_grad)
    k, v = (torch.randn(call.batch, call.kv_heads, call.seq_kv, call.head_dim, device=device, dtype=dt,
                        requires_grad=requires_grad) for _ in range(2))
    return q, k, v


def _sdpa_kwargs(call: AttentionCall) -> dict:
    """``is_causal`` only for square prefill (decode: the query sees every key)."""
    return dict(is_causal=call.causal and call.seq_q == call.seq_kv, enable_gqa=call.kv_heads != call.heads)


def _enabled_backends(torch) -> list[str]:
    from torch.nn.attention import SDPBackend

    cuda = torch.backends.cuda
    enabled = {"FLASH_ATTENTION": cuda.flash_sdp_enabled(), "EFFICIENT_ATTENTION": cuda.mem_efficient_sdp_enabled(),
               "MATH": cuda.math_sdp_enabled(), "CUDNN_ATTENTION": cuda.cudnn_sdp_enabled()}
    getter = getattr(torch._C, "_get_sdp_priority_order", None)
    order = [SDPBackend(i).name for i in getter()] if getter else list(DEFAULT_PRIORITY)
    return [name for name in order if enabled.get(name)]


def pick_backend(torch, fn) -> str:
    """The backend SDPA uses for ``fn`` (the timed call, forward or forward+backward):
    the first enabled one, in torch's priority order, that runs when it is the only
    one allowed."""
    import warnings

    from torch.nn.attention import SDPBackend, sdpa_kernel

    for name in _enabled_backends(torch):
        try:
            with warnings.catch_warnings(), sdpa_kernel([getattr(SDPBackend, name)]):
                warnings.simplefilter("ignore")
                fn()
            return name
        except RuntimeError:
            continue
    raise PerfmodelError("attention bench: no SDPA backend runs this case")


def reference_error(torch, q, k, v, call: AttentionCall, out) -> float:
    """``‖out − ref‖ / ‖ref‖`` against a float64 softmax(QKᵀ/√D + mask)·V written out here
    (GQA by repeating K/V, causal mask bottom-right aligned as the model counts)."""
    q64, k64, v64 = (x.detach().to(torch.float64) for x in (q, k, v))
    group = call.heads // call.kv_heads
    k64, v64 = k64.repeat_interleave(group, dim=1), v64.repeat_interleave(group, dim=1)
    scores = q64 @ k64.transpose(-1, -2) / math.sqrt(call.head_dim)
    if call.causal:
        offset = call.seq_kv - call.seq_q
        keep = torch.ones(call.seq_q, call.seq_kv, dtype=torch.bool, device=q.device).tril(offset)
        scores = scores.masked_fill(~keep, float("-inf"))
    ref = torch.softmax(scores, dim=-1) @ v64
    return float((out.detach().to(torch.float64) - ref).norm() / ref.norm())


def time_case(call: AttentionCall, device: str = "cpu", **timing) -> dict:
    """Measure one case: backend, median seconds per call and the reference check."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from perfmodel.hardware.timing import time_callable

    sdpa = torch.nn.functional.scaled_dot_product_attention
    kwargs = _sdpa_kwargs(call)
    backward = call.pass_ == "fwd_bwd"
    if call.pass_ == "bwd":
        raise PerfmodelError("attention bench: time 'fwd' or 'fwd_bwd' (backward alone is their difference)")
    q, k, v = _inputs(torch, call, device, backward)
    grad = torch.randn(call.batch, call.heads, call.seq_q, call.head_dim, device=q.device, dtype=q.dtype)

    def fn():
        if backward:
            return torch.autograd.grad(sdpa(q, k, v, **kwargs), (q, k, v), grad)
        with torch.no_grad():
            return sdpa(q, k, v, **kwargs)

    backend = pick_backend(torch, fn)
    with sdpa_kernel([getattr(SDPBackend, backend)]):
        with torch.no_grad():
            out = sdpa(q, k, v, **kwargs)
        check = (reference_error(torch, q, k, v, call, out)
                 if call.batch * call.heads * call.seq_q * call.seq_kv <= REFERENCE_LIMIT else float("nan"))
        t = time_callable(fn, device=device, **timing)
    del q, k, v, grad, out
    return dict(backend=backend, is_causal=kwargs["is_causal"], gqa="enable_gqa" if kwargs["enable_gqa"] else "none",
                measured_s=t.median_s, min_s=t.min_s, iqr_s=t.iqr_s, trials=t.trials,
                inner_repeats=t.inner_repeats, threads=t.threads, flush_l2=t.flush_l2, reference_rel_error=check)


# ------------------------------------------------------------------ the sweep


def _progress(total: int, enabled: bool):
    """tqdm on stderr when installed, else a plain counter; None when disabled."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        state = {"i": 0}

        def tick(label):
            state["i"] += 1
            print(f"[{state['i']}/{total}] {label}", file=sys.stderr, flush=True)
        return tick
    bar = tqdm(total=total, file=sys.stderr, unit="case")

    def tick(label):
        bar.set_postfix_str(label, refresh=False)
        bar.update()
        if bar.n >= total:
            bar.close()
    return tick


def _label(call: AttentionCall) -> str:
    mask = "causal" if call.causal else "full"
    return f"{call.dtype} {call.pass_} b{call.batch} h{call.heads}/{call.kv_heads} d{call.head_dim} {call.seq_q}x{call.seq_kv} {mask}"


def roof_columns(acc: Accelerator, dtype: str) -> dict:
    """The roof a row was predicted against, stored beside it for :func:`rescore`."""
    return dict(accelerator=acc.name, accelerator_key=acc.key, peak_flops_per_s=float(acc.peak(dtype)),
                vector_flops_per_s=acc.vector_peak, memory_bandwidth_bytes_per_s=float(acc.memory_bandwidth_bytes_per_s),
                memory_bytes=int(acc.memory_bytes))


def run(grid_name: str = "tiny", *, device: str = "cpu", accelerator: Accelerator | None = None,
        cases: Iterable[AttentionCall] | None = None, timing: dict | None = None, progress: bool = False,
        fit=None, threads: int | None = None) -> pd.DataFrame:
    """Time every case of ``grid_name`` (or ``cases``) on ``device`` and score it.

    ``accelerator``: the roof to predict against; default: this device measured now
    (:func:`perfmodel.hardware.probes.measure_device`, quick, same threads). ``fit``: the
    calibrated model (default: the stored one). ``threads``: torch CPU threads for the
    run (restored after). Returns one row per case (see :func:`score`).
    """
    import torch

    saved = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        return _run(torch, grid_name, device, accelerator, cases, timing, progress, fit)
    finally:
        torch.set_num_threads(saved)


def _run(torch, grid_name, device, accelerator, cases, timing, progress, fit) -> pd.DataFrame:
    from perfmodel.hardware.probes import _device_facts, measure_device

    kind = str(device).split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise PerfmodelError("attention bench: --device cuda requested but torch sees no CUDA device")
    label = grid_name if cases is None else "custom"
    cases = list(grid(grid_name) if cases is None else cases)
    if accelerator is None:
        dtypes = sorted({c.dtype for c in cases})
        accelerator = measure_device(dtypes, device=device, quick=True)
    facts = _device_facts(torch, device)
    provenance = dict(device=device, device_name=facts["device"], driver=facts.get("driver"), torch=facts["torch"],
                      cuda=facts.get("cuda"), date=facts["date"], grid=label,
                      load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)  # other work on the host
    tick = _progress(len(cases), progress)
    rows = []
    for call in cases:
        try:
            measured = time_case(call, device, **(timing or TIMING[grid_name]))
        except RuntimeError as exc:  # out of memory, or a backend failing mid-run: keep the sweep going
            measured = dict(backend="none", measured_s=float("nan"), failure=str(exc).splitlines()[0][:200])
        family, impl = FAMILIES.get((kind, measured["backend"]), (measured["backend"].lower(), "fused"))
        if family == "fa2" and _flash_impl(torch):
            family = _flash_impl(torch).lower()  # torch.nn.attention.activate_flash_attention_impl("FA3")
        rows.append({**provenance, **roof_columns(accelerator, call.dtype), "family": family, "impl": impl,
                     "regime": "decode" if call.seq_q == 1 else "prefill", "batch": call.batch, "heads": call.heads,
                     "kv_heads": call.kv_heads, "head_dim": call.head_dim, "seq_q": call.seq_q, "seq_kv": call.seq_kv,
                     "causal": call.causal, "dtype": call.dtype, "pass": call.pass_, **measured})
        if tick:
            tick(_label(call))
        if kind == "cuda":
            torch.cuda.empty_cache()
    return score(pd.DataFrame(rows), {accelerator.name: accelerator}, fit)


def _flash_impl(torch) -> str | None:
    current = getattr(torch.nn.attention, "current_flash_attention_impl", None)
    return current() if current else None


# ---------------------------------------------------------------- re-scoring


def score(frame: pd.DataFrame, accelerators: dict, fit=None) -> pd.DataFrame:
    """Measured rows plus the model: pure roofline, catalog and calibrated predictions
    and their errors (:mod:`perfmodel.hardware.attention_scoring`), keyed by the ``accelerator`` column."""
    from perfmodel.hardware.attention_fit import load_fit
    from perfmodel.hardware.attention_scoring import calibrate, predict_rows, public

    predicted = predict_rows(frame, accelerators)
    return public(calibrate(predicted, fit if fit is not None else load_fit(), accelerators))


def accelerator_from_rows(frame: pd.DataFrame, name: str) -> Accelerator:
    """The roof stored with the rows of accelerator ``name`` (peaks per dtype, vector
    rate, bandwidth, capacity), as an :class:`Accelerator` marked measured."""
    rows = frame[frame["accelerator"] == name]
    first = rows.iloc[0]
    peaks = {d: float(p) for d, p in rows.groupby("dtype")["peak_flops_per_s"].first().items()}
    return Accelerator(name=name, key=str(first.get("accelerator_key") or ""), memory_bytes=int(first["memory_bytes"]),
                       memory_bandwidth_bytes_per_s=float(first["memory_bandwidth_bytes_per_s"]),
                       peak_flops_per_s=peaks, vector_flops_per_s=float(first["vector_flops_per_s"]),
                       source="stored with the measurement rows", measured=True)


def rescore(path, accelerator: Accelerator | None = None, fit=None) -> pd.DataFrame:
    """Re-score a stored measurement CSV (from :func:`run`) with the current model,
    without torch: against ``accelerator`` if given, else each row's catalog accelerator
    (``accelerator_key``), else the roof stored in the rows."""
    from perfmodel.hardware.catalog import catalog

    from perfmodel.files import read_text

    text = read_text(path, "measurements")
    try:
        frame = pd.read_csv(io.StringIO(text), keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise PerfmodelError(f"measurements {path}: empty file (expected a CSV with a header row)") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise PerfmodelError(f"measurements {path}: malformed CSV: {' '.join(str(exc).split())[:150]}") from None
    needed = {"batch", "heads", "kv_heads", "head_dim", "seq_q", "seq_kv", "causal", "dtype", "pass", "measured_s"}
    missing = needed - set(frame.columns)
    if missing:
        raise PerfmodelError(f"measurements {path}: missing columns {', '.join(sorted(missing))}")
    keep = [c for c in frame.columns if c in needed or c in _MEASURED_COLUMNS]
    frame = _checked_measurements(frame[keep].copy(), path)
    for c, default in (("family", "unknown"), ("impl", "fused")):
        if c not in frame:
            frame[c] = default
    frame["regime"] = ["decode" if q == 1 else "prefill" for q in frame["seq_q"]]
    if accelerator is not None:
        frame["accelerator"] = accelerator.name
        return score(frame, {accelerator.name: accelerator}, fit)
    known = catalog()
    accelerators = {}
    for name in frame["accelerator"].unique():
        key = frame.loc[frame["accelerator"] == name, "accelerator_key"].iloc[0]
        accelerators[name] = known[key] if isinstance(key, str) and key in known else accelerator_from_rows(frame, name)
    return score(frame, accelerators, fit)


_COUNT_COLUMNS = ("batch", "heads", "kv_heads", "head_dim", "seq_q", "seq_kv")


def _checked_measurements(frame: pd.DataFrame, path) -> pd.DataFrame:
    """Measurement rows with every cell checked: positive whole counts, ``causal`` true or
    false, known dtype and pass, ``measured_s`` a positive number (blank: not measured)."""
    from perfmodel.units import DTYPES

    if frame.empty:
        raise PerfmodelError(f"measurements {path}: no rows under the header")

    def bad(i: int, column: str, value, expected: str) -> PerfmodelError:
        return PerfmodelError(f"measurements {path}: row {i + 2}: {column}: expected {expected}, got {value!r}")

    for column in _COUNT_COLUMNS:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        for i, (raw, v) in enumerate(zip(frame[column], numbers)):
            if not (v >= 1 and v == int(v)):
                raise bad(i, column, raw, "a positive whole number")
        frame[column] = numbers.astype("int64")
    measured = pd.to_numeric(frame["measured_s"], errors="coerce")
    for i, (raw, v) in enumerate(zip(frame["measured_s"], measured)):
        if not (pd.isna(raw) or (v > 0 and v < float("inf"))):
            raise bad(i, "measured_s", raw, "a positive number of seconds (or blank)")
    frame["measured_s"] = measured
    flags = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
    causal = [flags.get(str(v).strip().lower()) for v in frame["causal"]]
    for i, (raw, v) in enumerate(zip(frame["causal"], causal)):
        if v is None:
            raise bad(i, "causal", raw, "true or false")
    frame["causal"] = causal
    for column, known in (("dtype", DTYPES), ("pass", ("fwd", "bwd", "fwd_bwd"))):
        for i, v in enumerate(frame[column]):
            if v not in known:
                raise bad(i, column, v, f"one of {', '.join(known)}")
    return frame


#: columns a measurement CSV keeps when re-scored (provenance, the stored roof, timing)
_MEASURED_COLUMNS = ("device", "device_name", "driver", "torch", "cuda", "date", "grid", "load_average", "accelerator", "accelerator_key",
                     "peak_flops_per_s", "vector_flops_per_s", "memory_bandwidth_bytes_per_s", "memory_bytes",
                     "family", "impl", "backend", "is_causal", "gqa", "min_s", "iqr_s", "trials", "inner_repeats",
                     "threads", "flush_l2", "reference_rel_error", "failure")


# ------------------------------------------------------------------ the report


def report(*, device: str | None = None, grid: str | None = None, gpu: str | None = None, threads: int | None = None,
           published: bool = False, measured=None, by: str = "row", out_of_sample: bool = False, fit_path=None,
           refit=None, plot=None, progress: bool = False) -> pd.DataFrame:
    """What ``perfmodel validate attention`` prints: timed here (default), the published
    rows (``published``) or a stored CSV re-scored (``measured``); one row per call, or
    a summary per ``by`` keys (comma-separated)."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.hardware.attention_fit import load_fit, save
    from perfmodel.hardware.attention_scoring import plot as draw
    from perfmodel.hardware.attention_scoring import public, summarize

    if published and measured:
        raise PerfmodelError("--published and --measured: choose one")
    if (out_of_sample or refit) and not published:
        raise PerfmodelError("--out-of-sample and --refit need --published")
    if refit and fit_path:
        raise PerfmodelError("--refit and --fit: choose one")
    keys = [k.strip() for k in by.split(",") if k.strip()]
    if keys != ["row"] and (not keys or set(keys) - set(SUMMARY_KEYS)):
        raise PerfmodelError(f"--by: {by!r} is not row or a comma-separated list of: {', '.join(SUMMARY_KEYS)}")
    accelerator = get_accelerator(gpu) if gpu else None
    if published:
        from perfmodel.hardware import published as data

        frame = data.predicted()
        fit = data.train(frame) if refit else load_fit(fit_path)
        if refit:
            save(fit, refit)
        rows = data.scored(fit, out_of_sample=out_of_sample, rows_=frame)
    else:
        fit = load_fit(fit_path)
        if measured:
            rows = rescore(measured, accelerator, fit)
        else:
            if device is None:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            rows = run(grid or ("gpu" if device == "cuda" else "cpu"), device=device, accelerator=accelerator,
                       progress=progress, fit=fit, threads=threads)
    if plot:
        draw(rows, plot)
    if keys == ["row"]:
        return public(rows)
    missing = [k for k in keys if k not in rows.columns]
    if missing:
        raise PerfmodelError(f"--by: {', '.join(missing)} is not a column of these rows (they have: "
                             f"{', '.join(c for c in SUMMARY_KEYS if c in rows.columns)})")
    return summarize(rows, keys)
