"""Timing done right: warm-up, repeated trials, medians; CUDA events on a GPU.

:func:`time_callable` times ``fn()`` and returns a :class:`Timing` whose numbers are
**seconds per call** (floats, ``_s``), whatever the inner repeat count was.

- CPU: ``time.perf_counter_ns`` around each trial; the torch thread count is recorded.
- CUDA: ``torch.cuda.Event(enable_timing=True)`` pairs recorded on the current stream,
  read only after ``torch.cuda.synchronize()``; ``elapsed_time`` gives milliseconds and
  is converted to seconds here.

A trial is ``inner_repeats`` back-to-back calls (chosen once from the warm-up so a trial
lasts at least ``min_time_s``); per-call time of a trial = trial time / repeats. With
``flush_l2`` or a ``before_each`` hook, every call is timed on its own and the flush or
hook runs between calls, outside the timed region (as ``triton.testing.do_bench``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from perfmodel.errors import PerfmodelError

#: Bytes written to evict the GPU's L2 (H100: 50 MB, H200: 60 MB) between calls.
DEFAULT_FLUSH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Timing:
    """Per-call seconds over ``trials`` trials of ``inner_repeats`` calls each."""

    median_s: float
    min_s: float
    max_s: float
    mean_s: float
    stdev_s: float
    #: interquartile range (q3 - q1) of the per-trial per-call times
    iqr_s: float
    trials: int
    inner_repeats: int
    device: str
    #: "perf_counter_ns" or "cuda_event"
    timer: str
    #: torch intra-op threads on CPU (None on CUDA or without torch)
    threads: int | None = None
    #: whether each call was timed alone with an L2/LLC flush before it
    flush_l2: bool = False
    #: per-call seconds of each trial, in order
    samples_s: tuple[float, ...] = ()

    @property
    def spread(self) -> float:
        """Relative spread: IQR / median (0 when all trials agree)."""
        return self.iqr_s / self.median_s if self.median_s > 0 else math.inf

    def rate(self, amount: float) -> float:
        """``amount`` per second at the median time (FLOP/s from FLOPs, bytes/s from bytes)."""
        return amount / self.median_s

    def to_dict(self) -> dict:
        """Plain-Python fields (samples as a list), ready for JSON or a DataFrame row."""
        d = asdict(self)
        d["samples_s"] = list(self.samples_s)
        return d


def summarize(samples_s, *, inner_repeats: int, device: str, timer: str,
              threads: int | None = None, flush_l2: bool = False) -> Timing:
    """Build a :class:`Timing` from per-call seconds of each trial."""
    xs = [float(x) for x in samples_s]
    if not xs:
        raise PerfmodelError("timing: no samples")
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
        stdev = statistics.stdev(xs)
    else:
        q1 = q3 = xs[0]
        stdev = 0.0
    return Timing(
        median_s=statistics.median(xs), min_s=min(xs), max_s=max(xs),
        mean_s=statistics.fmean(xs), stdev_s=stdev, iqr_s=q3 - q1,
        trials=len(xs), inner_repeats=inner_repeats, device=device, timer=timer,
        threads=threads, flush_l2=flush_l2, samples_s=tuple(xs),
    )


def time_callable(
    fn: Callable[[], object],
    *,
    device: str = "cpu",
    warmup: int = 3,
    trials: int = 7,
    min_time_s: float = 0.05,
    inner_repeats: int | None = None,
    max_inner_repeats: int = 1_000_000,
    flush_l2: bool = False,
    flush_bytes: int | None = None,
    before_each: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn()``; returns per-call seconds (median over ``trials``).

    ``device``: ``"cpu"`` or a CUDA device (``"cuda"``, ``"cuda:1"``, a ``torch.device``).
    ``warmup`` untimed calls come first (at least one when ``inner_repeats`` is None,
    since the warm-up also calibrates the repeat count). ``before_each`` (e.g. zeroing
    grads between forward+backward calls) runs before every call, untimed.
    """
    if trials < 1 or warmup < 0:
        raise PerfmodelError(f"timing: need trials >= 1 and warmup >= 0, got trials={trials}, warmup={warmup}")
    if inner_repeats is not None and inner_repeats < 1:
        raise PerfmodelError(f"timing: inner_repeats must be >= 1, got {inner_repeats}")
    if not min_time_s >= 0:
        raise PerfmodelError(f"timing: min_time_s must be >= 0, got {min_time_s}")
    kind = str(device).split(":")[0]
    if kind == "cuda":
        return _time_cuda(fn, device, warmup, trials, min_time_s, inner_repeats,
                          max_inner_repeats, flush_l2, flush_bytes, before_each)
    if kind == "cpu":
        return _time_cpu(fn, warmup, trials, min_time_s, inner_repeats,
                         max_inner_repeats, flush_l2, flush_bytes, before_each)
    raise PerfmodelError(f"timing: unsupported device {device!r} (use 'cpu' or 'cuda[:N]')")


def _choose_repeats(warm_times_s, min_time_s, max_inner_repeats) -> int:
    """Calls per trial so that one trial lasts >= ``min_time_s``; the first warm-up call
    (module load, handle creation) is ignored when there are others."""
    est = min(warm_times_s[1:] or warm_times_s)
    if est <= 0:
        return max_inner_repeats
    return max(1, min(max_inner_repeats, math.ceil(min_time_s / est)))


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


# ---------------------------------------------------------------------------- CPU


def _cpu_flusher(flush_bytes):
    """A callable that overwrites a buffer larger than the last-level cache."""
    nbytes = flush_bytes or max(64 * 2**20, 4 * _cpu_llc_bytes())
    src, dst = b"\x01" * nbytes, memoryview(bytearray(nbytes))

    def flush():
        dst[:] = src
    return flush


def _cpu_llc_bytes() -> int:
    """Last-level cache size of cpu0 from sysfs (0 when unknown)."""
    import glob
    best = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best


def _preparer(flush, before_each):
    """The untimed work before each call: an optional cache flush, then the user's hook."""

    def prepare():
        if flush is not None:
            flush()
        if before_each is not None:
            before_each()

    return prepare


def _time_cpu(fn, warmup, trials, min_time_s, inner_repeats, max_inner, flush_l2, flush_bytes, before_each):
    clock = time.perf_counter_ns
    flush = _cpu_flusher(flush_bytes) if flush_l2 else None
    per_call = flush is not None or before_each is not None

    prepare = _preparer(flush, before_each)

    warm = []  # includes prepare(), so a per-call trial's wall time stays near min_time_s
    for _ in range(max(warmup, 1 if inner_repeats is None else 0)):
        t0 = clock()
        prepare()
        fn()
        warm.append((clock() - t0) * 1e-9)
    n = inner_repeats or _choose_repeats(warm, min_time_s, max_inner)

    samples = []
    for _ in range(trials):
        if per_call:
            total_ns = 0
            for _ in range(n):
                prepare()
                t0 = clock()
                fn()
                total_ns += clock() - t0
        else:
            t0 = clock()
            for _ in range(n):
                fn()
            total_ns = clock() - t0
        samples.append(total_ns * 1e-9 / n)
    return summarize(samples, inner_repeats=n, device="cpu", timer="perf_counter_ns",
                     threads=_torch_threads(), flush_l2=flush_l2)


# --------------------------------------------------------------------------- CUDA


def _time_cuda(fn, device, warmup, trials, min_time_s, inner_repeats, max_inner, flush_l2, flush_bytes, before_each):
    import torch

    if not torch.cuda.is_available():
        raise PerfmodelError(f"timing: device {device!r} requested but torch sees no CUDA device")
    dev = torch.device(device)
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    with torch.cuda.device(dev):
        flush = None
        if flush_l2:
            l2 = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 0
            nbytes = flush_bytes or max(DEFAULT_FLUSH_BYTES, 4 * l2)
            cache = torch.empty(nbytes // 4, dtype=torch.int32, device=dev)
            flush = cache.zero_
        per_call = flush is not None or before_each is not None

        prepare = _preparer(flush, before_each)

        def event():
            return torch.cuda.Event(enable_timing=True)

        # Warm-up, each call timed with its own events (synchronized) to calibrate;
        # in per-call mode prepare() is inside, so a trial's wall time stays near min_time_s.
        torch.cuda.synchronize(dev)
        warm = []
        for _ in range(max(warmup, 1 if inner_repeats is None else 0)):
            start, end = event(), event()
            start.record()
            prepare()
            fn()
            end.record()
            torch.cuda.synchronize(dev)
            warm.append(start.elapsed_time(end) * 1e-3)  # ms -> s
        n = inner_repeats or _choose_repeats(warm, min_time_s, max_inner)

        # Timed trials: enqueue everything, synchronize once, then read the events.
        pairs = []  # per trial: list of (start, end) event pairs
        torch.cuda.synchronize(dev)
        for _ in range(trials):
            if per_call:
                trial = []
                for _ in range(n):
                    prepare()  # enqueued before `start`: not timed
                    start, end = event(), event()
                    start.record()
                    fn()
                    end.record()
                    trial.append((start, end))
            else:
                start, end = event(), event()
                start.record()
                for _ in range(n):
                    fn()
                end.record()
                trial = [(start, end)]
            pairs.append(trial)
        torch.cuda.synchronize(dev)
        samples = [sum(s.elapsed_time(e) for s, e in trial) * 1e-3 / n for trial in pairs]
    return summarize(samples, inner_repeats=n, device=str(dev), timer="cuda_event",
                     threads=None, flush_l2=flush_l2)
