"""hardware.timing: units (seconds per call), ordering, statistics, calibration.

Independent sources: the wall clock itself (``time.sleep(x)`` lasts at least ``x``
seconds, Python docs) and a fake ``perf_counter_ns`` that advances by exactly known
amounts; statistics checked against the ``statistics`` module's definitions.
No test asserts the machine's speed.
"""

import statistics
import time

import pytest

from perfmodel.hardware import timing
from perfmodel.hardware.timing import Timing, summarize, time_callable
from perfmodel.errors import PerfmodelError


class FakeClock:
    """A perf_counter_ns that moves only when told to."""

    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns

    def advance(self, seconds):
        self.ns += round(seconds * 1e9)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter_ns", fake)
    return fake


def test_sleep_is_measured_in_seconds():
    # time.sleep(0.02) lasts >= 20 ms; generous upper bound for noisy CI machines.
    t = time_callable(lambda: time.sleep(0.02), warmup=1, trials=3, min_time_s=0)
    assert isinstance(t, Timing)
    assert 0.015 <= t.median_s <= 0.06
    assert t.timer == "perf_counter_ns" and t.device == "cpu"
    assert t.inner_repeats == 1 and t.trials == 3 and len(t.samples_s) == 3


def test_longer_work_measures_longer():
    short = time_callable(lambda: time.sleep(0.01), warmup=1, trials=3, min_time_s=0)
    long = time_callable(lambda: time.sleep(0.03), warmup=1, trials=3, min_time_s=0)
    assert short.median_s < long.median_s
    assert long.median_s / short.median_s > 1.5


def test_statistics_are_consistent():
    t = time_callable(lambda: time.sleep(0.002), warmup=1, trials=5, min_time_s=0)
    assert t.min_s <= t.median_s <= t.max_s
    assert t.min_s <= t.mean_s <= t.max_s
    assert t.stdev_s >= 0 and t.iqr_s >= 0
    assert t.median_s == statistics.median(t.samples_s)
    assert t.min_s == min(t.samples_s) and t.max_s == max(t.samples_s)


def test_calibrated_repeats_give_per_call_seconds():
    # A trial must last >= 30 ms, so ~6 calls of 5 ms; the result is still ~5 ms per call.
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.005)

    t = time_callable(fn, warmup=2, trials=3, min_time_s=0.03)
    assert t.inner_repeats >= 2
    assert len(calls) == 2 + 3 * t.inner_repeats
    assert 0.004 <= t.median_s <= 0.02  # per call, not per trial (>= 30 ms)


def test_fake_clock_exact_units(clock):
    # Each call advances the clock by exactly 2 ms: every sample is 0.002 s.
    t = time_callable(lambda: clock.advance(0.002), warmup=1, trials=4, inner_repeats=5)
    assert t.inner_repeats == 5
    assert t.samples_s == pytest.approx((0.002,) * 4, rel=1e-12)
    assert t.median_s == pytest.approx(0.002, rel=1e-12)
    assert t.stdev_s == pytest.approx(0) and t.iqr_s == pytest.approx(0)
    assert t.rate(4e9) == pytest.approx(2e12)  # e.g. FLOPs -> FLOP/s


def test_calibration_with_fake_clock(clock):
    # First warm-up call is slow (1 s, ignored), later ones 1 ms: 0.1 s / 1 ms = 100 calls.
    durations = iter([1.0] + [0.001] * 10_000)
    t = time_callable(lambda: clock.advance(next(durations)), warmup=3, trials=2, min_time_s=0.1)
    assert t.inner_repeats == 100
    assert t.median_s == pytest.approx(0.001)


def test_before_each_and_flush_are_untimed(clock):
    # The hook costs 1 s of fake time per call; only fn's 1 ms counts.
    hooks = []

    def hook():
        hooks.append(1)
        clock.advance(1.0)

    t = time_callable(lambda: clock.advance(0.001), warmup=1, trials=3, inner_repeats=4,
                      before_each=hook, flush_l2=True, flush_bytes=1 << 16)
    assert t.median_s == pytest.approx(0.001)
    assert t.flush_l2 is True
    assert len(hooks) == 1 + 3 * 4


def test_threads_recorded_on_cpu():
    torch = pytest.importorskip("torch")
    t = time_callable(lambda: None, warmup=1, trials=2, inner_repeats=3)
    assert t.threads == torch.get_num_threads()


def test_summarize_and_to_dict():
    t = summarize([0.3, 0.1, 0.2], inner_repeats=1, device="cpu", timer="perf_counter_ns")
    assert (t.min_s, t.median_s, t.max_s) == (0.1, 0.2, 0.3)
    assert t.mean_s == pytest.approx(0.2)
    assert t.stdev_s == pytest.approx(statistics.stdev([0.1, 0.2, 0.3]))
    assert t.iqr_s == pytest.approx(0.1)  # inclusive quartiles 0.15 and 0.25
    assert t.spread == pytest.approx(0.5)
    d = t.to_dict()
    assert d["samples_s"] == [0.3, 0.1, 0.2] and d["median_s"] == 0.2
    one = summarize([0.5], inner_repeats=2, device="cpu", timer="perf_counter_ns")
    assert one.stdev_s == 0 and one.iqr_s == 0


@pytest.mark.parametrize("kwargs", [dict(trials=0), dict(warmup=-1), dict(inner_repeats=0),
                                    dict(device="tpu"), dict(min_time_s=-1)])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(PerfmodelError):
        time_callable(lambda: None, **kwargs)


def test_cuda_without_gpu_is_an_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(PerfmodelError, match="CUDA"):
        time_callable(lambda: None, device="cuda")


def test_cuda_events_time_in_seconds():
    # On a GPU: a 2048^3 bf16 product takes microseconds to milliseconds, never >= 1 s
    # (that would mean elapsed_time's milliseconds were not converted).
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    a = torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16)
    t = time_callable(lambda: a @ a, device="cuda", warmup=2, trials=5, min_time_s=0.01)
    assert t.timer == "cuda_event" and t.device.startswith("cuda")
    assert 0 < t.min_s <= t.median_s <= t.max_s < 1
    flushed = time_callable(lambda: a @ a, device="cuda", warmup=2, trials=3, min_time_s=0.005, flush_l2=True)
    assert flushed.flush_l2 and 0 < flushed.median_s < 1
    # sleep on the host between launches is not GPU time: per-call events exclude it
    hooked = time_callable(lambda: a @ a, device="cuda", warmup=1, trials=3, inner_repeats=3,
                           before_each=lambda: time.sleep(0.01))
    assert hooked.median_s < 0.01


def test_cuda_path_logic_with_fake_events(monkeypatch, clock):
    """The CUDA branch run against stand-ins: events read a fake clock and report
    milliseconds (as ``torch.cuda.Event.elapsed_time`` does); the result must be seconds,
    read only after a synchronize, with hooks outside the timed region."""
    torch = pytest.importorskip("torch")
    from contextlib import nullcontext

    synced = []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self, stream=None):
            self.t = clock()

        def elapsed_time(self, end):
            assert synced, "events read before torch.cuda.synchronize()"
            return (end.t - self.t) / 1e6  # milliseconds

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda dev: nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: synced.append(dev))
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)

    t = time_callable(lambda: clock.advance(0.003), device="cuda", warmup=2, trials=3, min_time_s=0.03)
    assert t.timer == "cuda_event" and t.device == "cuda:0" and t.threads is None
    assert t.inner_repeats == 10
    assert t.median_s == pytest.approx(0.003)

    t = time_callable(lambda: clock.advance(0.003), device="cuda:0", warmup=1, trials=2, inner_repeats=4,
                      before_each=lambda: clock.advance(1.0))
    assert t.median_s == pytest.approx(0.003)
