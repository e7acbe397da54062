"""Measure this device: achievable matmul rate per dtype and copy bandwidth -> Accelerator.

- :func:`measure_matmul`: FLOP/s (FLOPs = 2*m*n*k) for a large square GEMM and a few
  model-shaped ones (Llama-3-8B projections), on random data (never zeros).
- :func:`measure_bandwidth`: bytes/s of a device-to-device ``dst.copy_(src)``
  (bytes = read + write = 2 x size) and optionally a triad ``a = b + s*c`` (3 x size),
  with a working set far larger than L2 / the last-level cache.
- :func:`measure_device`: both, as an :class:`Accelerator` with ``measured=True`` whose
  peaks are the best measured rates (achieved, not datasheet), and
  :func:`save_accelerator` to write it in the user-file JSON format.

Run ``python3 -m perfmodel.hardware.probes --out measured.json`` on the machine to measure.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from perfmodel.hardware.accelerator import Accelerator
from perfmodel.hardware.timing import time_callable
from perfmodel.errors import PerfmodelError

GIB, MIB = 2**30, 2**20

#: (m, n, k, label): out[m, n] = a[m, k] @ b[k, n]. Model shapes: Llama-3-8B (hidden 4096,
#: FFN 14336, 8 KV heads x 128) with 4096 tokens on GPU, scaled down on CPU.
GPU_SHAPES = (
    (8192, 8192, 8192, "square 8192"),
    (4096, 14336, 4096, "ffn up/gate, 4096 tokens"),
    (4096, 4096, 14336, "ffn down, 4096 tokens"),
    (4096, 4096, 4096, "attn q/o proj, 4096 tokens"),
    (4096, 1024, 4096, "attn k/v proj (GQA), 4096 tokens"),
)
CPU_SHAPES = (
    (2048, 2048, 2048, "square 2048"),
    (256, 3584, 1024, "ffn up/gate (1/4 width), 256 tokens"),
    (256, 1024, 3584, "ffn down (1/4 width), 256 tokens"),
)
GPU_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
CPU_DTYPES = ("fp32", "bf16")
#: timing settings (time_callable keywords) per device kind, normal and quick
TIMING = {
    ("cuda", False): dict(warmup=3, trials=10, min_time_s=0.1),
    ("cuda", True): dict(warmup=2, trials=5, min_time_s=0.03),
    ("cpu", False): dict(warmup=2, trials=5, min_time_s=0.1),
    ("cpu", True): dict(warmup=1, trials=3, min_time_s=0.02),
}

Progress = Callable[[str], None] | None


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _kind(device) -> str:
    kind = str(device).split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise PerfmodelError(f"probes: unsupported device {device!r} (use 'cpu' or 'cuda[:N]')")
    return kind


def _timing_kwargs(device, quick, overrides) -> dict:
    kw = dict(TIMING[(_kind(device), bool(quick))])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return kw


def _normalize_shapes(shapes) -> list[tuple[int, int, int, str]]:
    out = []
    for shape in shapes:
        m, n, k = (int(x) for x in shape[:3])
        if min(m, n, k) < 1:
            raise PerfmodelError(f"probes: GEMM shape {tuple(shape)} must be positive")
        label = shape[3] if len(shape) > 3 else ("square" if m == n == k else "gemm") + f" {m}x{n}x{k}"
        out.append((m, n, k, label))
    return out


# ------------------------------------------------------------------------- matmul


def fp8_supported(device) -> bool:
    """Whether ``torch._scaled_mm`` with e4m3 operands runs on ``device`` (CUDA, sm_89+)."""
    import torch
    if _kind(device) != "cuda" or not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return False
    if torch.cuda.get_device_capability(device) < (8, 9):
        return False
    try:
        _gemm_callable(torch, "fp8", 32, 32, 32, device)()
        torch.cuda.synchronize(device)
    except (RuntimeError, TypeError):
        return False
    return True


@contextmanager
def _matmul_precision(torch, dtype):
    """fp32 = IEEE fp32 (TF32 off); tf32 = TF32 tensor cores allowed; restored afterwards."""
    saved_prec = torch.get_float32_matmul_precision()
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        if dtype in ("fp32", "tf32"):
            torch.set_float32_matmul_precision("highest" if dtype == "fp32" else "high")
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        yield
    finally:
        torch.set_float32_matmul_precision(saved_prec)
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32


def _gemm_callable(torch, dtype, m, n, k, device):
    """A no-argument callable computing one (m x k) @ (k x n) product in ``dtype``."""
    if dtype == "fp8":
        a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, k, device=device).to(torch.float8_e4m3fn).t()  # column-major, as required
        one = torch.ones((), device=device, dtype=torch.float32)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    tdtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    a = torch.randn(m, k, device=device, dtype=tdtype)
    b = torch.randn(k, n, device=device, dtype=tdtype)
    out = torch.empty(m, n, device=device, dtype=tdtype)
    return lambda: torch.mm(a, b, out=out)


def _cpu_shapes(torch, dtype, quick) -> list[tuple[int, int, int, str]]:
    """CPU_SHAPES scaled down by powers of two until one square product is projected to
    take under ~0.3 s (0.1 s quick), from a 256^3 trial product: bf16 on a CPU without
    bf16 units runs a thousand times slower than fp32."""
    fn = _gemm_callable(torch, dtype, 256, 256, 256, "cpu")
    fn()
    t = time_callable(fn, warmup=0, trials=1, inner_repeats=1)
    rate = 2 * 256**3 / t.median_s
    budget = 0.1 if quick else 0.3
    scale = 1
    while scale < 8 and 2 * (CPU_SHAPES[0][0] // scale) ** 3 / rate > budget:
        scale *= 2
    if scale == 1:
        return list(CPU_SHAPES)
    scaled = [(max(16, m // scale), max(16, n // scale), max(16, k // scale), label) for m, n, k, label in CPU_SHAPES]
    return [(m, n, k, f"square {m}" if m == n == k else f"{label}, scaled 1/{scale}") for m, n, k, label in scaled]


def measure_matmul(dtype: str, shapes: Iterable | None = None, *, device: str | None = None,
                   quick: bool = False, warmup: int | None = None, trials: int | None = None,
                   min_time_s: float | None = None, progress: Progress = None):
    """FLOP/s of ``a @ b`` per shape in ``dtype``: a DataFrame, one row per shape.

    ``shapes``: ``(m, n, k)`` or ``(m, n, k, label)`` tuples; default: GPU_SHAPES or
    CPU_SHAPES (scaled down for slow dtypes; first one only when ``quick``). Columns: dtype, label, m, n, k, flops,
    time_s (median per call), min_s, max_s, iqr_s, flops_per_s (flops / time_s),
    trials, inner_repeats, threads.
    """
    import pandas as pd
    import torch

    device = device or default_device()
    kind = _kind(device)
    allowed = GPU_DTYPES if kind == "cuda" else CPU_DTYPES + ("fp16",)
    if dtype not in allowed:
        raise PerfmodelError(f"probes: dtype {dtype!r} is not measurable on {kind} (choose from {', '.join(allowed)})")
    if dtype == "fp8" and not fp8_supported(device):
        raise PerfmodelError(f"probes: fp8 matmul (torch._scaled_mm) is not available on {device}")
    if shapes is None:
        shapes = GPU_SHAPES if kind == "cuda" else _cpu_shapes(torch, dtype, quick)
        shapes = shapes[:1] if quick else shapes
    kw = _timing_kwargs(device, quick, dict(warmup=warmup, trials=trials, min_time_s=min_time_s))

    shapes = _normalize_shapes(shapes)
    if dtype == "fp8" and any(x % 16 for m, n, k, _ in shapes for x in (m, n, k)):
        raise PerfmodelError("probes: fp8 matmul (torch._scaled_mm) needs m, n and k divisible by 16")
    rows = []
    with _matmul_precision(torch, dtype):
        for m, n, k, label in shapes:
            if progress:
                progress(f"matmul {dtype} {label} ({m}x{n}x{k}) on {device}")
            fn = _gemm_callable(torch, dtype, m, n, k, device)
            t = time_callable(fn, device=device, **kw)
            del fn
            flops = 2 * m * n * k
            rows.append(dict(dtype=dtype, label=label, m=m, n=n, k=k, flops=flops,
                             time_s=t.median_s, min_s=t.min_s, max_s=t.max_s, iqr_s=t.iqr_s,
                             flops_per_s=t.rate(flops), trials=t.trials,
                             inner_repeats=t.inner_repeats, threads=t.threads))
    if kind == "cuda":
        torch.cuda.empty_cache()
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- bandwidth


def _default_buffer_bytes(device, quick) -> int:
    """Per-buffer size: 1 GiB on a GPU (bounded by free memory), 128 MiB on CPU."""
    if _kind(device) == "cuda":
        import torch
        free, _ = torch.cuda.mem_get_info(device)
        return min((256 * MIB) if quick else GIB, free // 8)
    return 64 * MIB if quick else 128 * MIB


def measure_bandwidth(*, device: str | None = None, buffer_bytes: int | None = None,
                      triad: bool = False, quick: bool = False, warmup: int | None = None,
                      trials: int | None = None, min_time_s: float | None = None,
                      progress: Progress = None):
    """Bytes/s of a device-to-device copy (and a triad): a DataFrame, one row per kernel.

    Columns: kind ("copy" or "triad"), buffer_bytes, bytes_moved (copy: 2 x buffer,
    read + write; triad: 3 x buffer), time_s, min_s, max_s, iqr_s, bytes_per_s, trials,
    inner_repeats, threads.
    """
    import pandas as pd
    import torch

    device = device or default_device()
    kind = _kind(device)
    nbytes = int(buffer_bytes or _default_buffer_bytes(device, quick))
    numel = nbytes // 4
    if numel < 1:
        raise PerfmodelError(f"probes: buffer_bytes={buffer_bytes} is too small")
    nbytes = numel * 4
    kw = _timing_kwargs(device, quick, dict(warmup=warmup, trials=trials, min_time_s=min_time_s))

    rows = []
    src = torch.rand(numel, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    kernels = [("copy", 2 * nbytes, lambda: dst.copy_(src))]
    if triad:
        c = torch.rand_like(src)
        kernels.append(("triad", 3 * nbytes, lambda: torch.add(src, c, alpha=3.0, out=dst)))
    for name, moved, fn in kernels:
        if progress:
            progress(f"bandwidth {name} of {nbytes / MIB:.0f} MiB buffers on {device}")
        t = time_callable(fn, device=device, **kw)
        rows.append(dict(kind=name, buffer_bytes=nbytes, bytes_moved=moved, time_s=t.median_s,
                         min_s=t.min_s, max_s=t.max_s, iqr_s=t.iqr_s, bytes_per_s=t.rate(moved),
                         trials=t.trials, inner_repeats=t.inner_repeats, threads=t.threads))
    del src, dst, kernels
    if kind == "cuda":
        torch.cuda.empty_cache()
    return pd.DataFrame(rows)


# ------------------------------------------------------------------- the device


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    raise PerfmodelError("probes: cannot read this machine's memory size")


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _device_facts(torch, device) -> dict:
    """Name, capacity, cache and software versions of ``device``."""
    facts = dict(torch=torch.__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    if _kind(device) == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(device=props.name, memory_bytes=int(props.total_memory),
                     sm_count=int(props.multi_processor_count),
                     l2_bytes=int(getattr(props, "L2_cache_size", 0)) or None,
                     capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                     driver=_nvidia_driver(), vendor="NVIDIA" if "nvidia" in props.name.lower() else "")
    else:
        facts.update(device=_cpu_model(), memory_bytes=_cpu_memory_bytes(), threads=torch.get_num_threads(),
                     cpus=os.cpu_count(), vendor="")
    return facts


def measure_device(dtypes: Iterable[str] | None = None, *, device: str | None = None, quick: bool = False,
                   shapes: Iterable | None = None, buffer_bytes: int | None = None, triad: bool = False,
                   warmup: int | None = None, trials: int | None = None, min_time_s: float | None = None,
                   progress: Progress = None) -> Accelerator:
    """Measure matmul rates and copy bandwidth of ``device`` as an :class:`Accelerator`.

    ``dtypes`` default: fp32, tf32, bf16, fp16, fp8 on CUDA (fp8 skipped when
    ``torch._scaled_mm`` cannot run), fp32 and bf16 on CPU. Peaks are the best measured
    rate over ``shapes`` per dtype; bandwidth is the copy's. ``extra`` holds raw rows.
    """
    import torch

    device = device or default_device()
    kind = _kind(device)
    if kind == "cuda" and not torch.cuda.is_available():
        raise PerfmodelError(f"probes: device {device!r} requested but torch sees no CUDA device")
    skipped = []
    if dtypes is None:
        dtypes = list(GPU_DTYPES if kind == "cuda" else CPU_DTYPES)
        if "fp8" in dtypes and not fp8_supported(device):
            dtypes.remove("fp8")
            skipped.append("fp8 (torch._scaled_mm unavailable)")
    timing = dict(warmup=warmup, trials=trials, min_time_s=min_time_s)
    facts = _device_facts(torch, device)

    frames = [measure_matmul(d, shapes, device=device, quick=quick, progress=progress, **timing) for d in dtypes]
    if not frames:
        raise PerfmodelError("probes: no dtypes to measure")
    bw = measure_bandwidth(device=device, buffer_bytes=buffer_bytes, triad=triad, quick=quick,
                           progress=progress, **timing)
    peaks = {d: float(f["flops_per_s"].max()) for d, f in zip(dtypes, frames)}
    copy_bw = float(bw.loc[bw["kind"] == "copy", "bytes_per_s"].iloc[0])

    provenance = [f"measured {facts['date']} on {facts['device']} by hardware.probes",
                  f"torch {facts['torch']}"]
    if kind == "cuda":
        provenance += [f"CUDA {facts['cuda']}", f"driver {facts['driver'] or 'unknown'}",
                       f"compute capability {facts['capability']}"]
        name = f"measured: {facts['device']}"
    else:
        provenance.append(f"{facts['threads']} torch threads of {facts['cpus']} CPUs")
        name = f"measured: {facts['device']} ({facts['threads']} threads)"
    provenance.append(f"bandwidth = dst.copy_(src) of {int(bw['buffer_bytes'].iloc[0])} bytes, counted read + write")
    notes = ("Peaks are the best achieved matmul rate over the shapes in extra['matmul'] (not datasheet "
             "peaks); fp32 with TF32 disabled." + (f" Skipped: {', '.join(skipped)}." if skipped else ""))
    return Accelerator(
        name=name, key="measured", vendor=facts["vendor"], memory_bytes=int(facts["memory_bytes"]),
        memory_bandwidth_bytes_per_s=copy_bw, peak_flops_per_s=peaks,
        l2_bytes=facts.get("l2_bytes"), sm_count=facts.get("sm_count"),
        source="; ".join(provenance), notes=notes, measured=True,
        extra=dict(device=facts, matmul=_records(frames), bandwidth=_records([bw])),
    )


def _records(frames) -> list[dict]:
    """DataFrame rows as plain-Python dicts (JSON-safe)."""
    return [{k: _plain(v) for k, v in row.items()} for f in frames for row in f.to_dict("records")]


def _plain(value):
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_accelerator(acc: Accelerator, path) -> None:
    """Write ``acc`` as a JSON user file (the format ``perfmodel.hardware.catalog`` loads back)."""
    from perfmodel.hardware.catalog import dump_accelerator_file

    dump_accelerator_file(acc, path)



def main(argv=None) -> int:
    """``python3 -m perfmodel.hardware.probes [--device cuda] [--quick] [--dtypes bf16,fp16] [--out FILE]``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python3 -m perfmodel.hardware.probes", description=main.__doc__)
    p.add_argument("--device")
    p.add_argument("--dtypes", help="comma-separated, e.g. fp32,bf16")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--triad", action="store_true")
    p.add_argument("--out", help="write the measured accelerator as JSON here")
    args = p.parse_args(argv)
    acc = measure_device(args.dtypes.split(",") if args.dtypes else None, device=args.device,
                         quick=args.quick, triad=args.triad, progress=lambda m: print(m, file=sys.stderr, flush=True))
    for row in acc.extra["matmul"]:
        print(f"{row['dtype']:>5} {row['label']:<34} {row['flops_per_s'] / 1e12:9.2f} TFLOP/s "
              f"(median {row['time_s'] * 1e3:.3f} ms, iqr {row['iqr_s'] * 1e3:.3f} ms, x{row['inner_repeats']})")
    for row in acc.extra["bandwidth"]:
        print(f"{row['kind']:>5} {row['buffer_bytes'] / MIB:.0f} MiB buffers {row['bytes_per_s'] / 1e9:9.1f} GB/s")
    print(acc.name, "|", acc.source)
    if args.out:
        save_accelerator(acc, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
