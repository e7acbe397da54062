"""hardware.probes on the CPU with tiny sizes: shapes of the results, units, Accelerator.

Independent sources: a GEMM (m x k) @ (k x n) does 2*m*n*k FLOPs (one multiply and one
add per term; the same count as torch.utils.flop_counter's mm formula); a copy moves
2 x its size (read + write, the STREAM convention). No test asserts the machine's speed:
rates are only checked to be positive, finite and below an absurd 1e18.
"""

import dataclasses
import json
import math

import pytest

torch = pytest.importorskip("torch")

from perfmodel.hardware import probes  # noqa: E402
from perfmodel.hardware.accelerator import Accelerator  # noqa: E402
from perfmodel.hardware.probes import measure_bandwidth, measure_device, measure_matmul, save_accelerator  # noqa: E402
from perfmodel.errors import PerfmodelError  # noqa: E402

FAST = dict(warmup=1, trials=2, min_time_s=0.001)
TINY_SHAPES = [(64, 64, 64), (32, 48, 16, "odd")]


def _sane(rate):
    return math.isfinite(rate) and 0 < rate < 1e18


@pytest.fixture(scope="module")
def measured():
    return measure_device(device="cpu", shapes=TINY_SHAPES, buffer_bytes=1 << 20, **FAST)


def test_matmul_rows_and_units():
    df = measure_matmul("fp32", TINY_SHAPES, device="cpu", **FAST)
    assert list(df["label"]) == ["square 64x64x64", "odd"]
    assert list(df["flops"]) == [2 * 64 * 64 * 64, 2 * 32 * 48 * 16]
    for row in df.to_dict("records"):
        assert _sane(row["flops_per_s"])
        assert row["flops_per_s"] == pytest.approx(row["flops"] / row["time_s"])
        assert row["min_s"] <= row["time_s"] <= row["max_s"]
        assert row["dtype"] == "fp32" and row["trials"] == 2 and row["threads"] >= 1


def test_matmul_bf16_on_cpu():
    df = measure_matmul("bf16", [(32, 32, 32)], device="cpu", **FAST)
    assert _sane(df["flops_per_s"].iloc[0])


def test_cpu_default_shapes_scale_to_a_budget():
    shapes = probes._cpu_shapes(torch, "bf16", quick=True)
    assert len(shapes) == len(probes.CPU_SHAPES)
    assert all(min(s[:3]) >= 16 for s in shapes)
    assert shapes[0][0] == shapes[0][1] == shapes[0][2] <= probes.CPU_SHAPES[0][0]


@pytest.mark.parametrize("dtype", ["tf32", "fp8", "int4"])
def test_dtypes_not_measurable_on_cpu(dtype):
    with pytest.raises(PerfmodelError, match=dtype):
        measure_matmul(dtype, [(16, 16, 16)], device="cpu", **FAST)


def test_bad_shape_and_device():
    with pytest.raises(PerfmodelError, match="positive"):
        measure_matmul("fp32", [(0, 16, 16)], device="cpu", **FAST)
    with pytest.raises(PerfmodelError, match="unsupported device"):
        measure_matmul("fp32", [(16, 16, 16)], device="tpu", **FAST)


def test_bandwidth_copy_and_triad():
    df = measure_bandwidth(device="cpu", buffer_bytes=1 << 20, triad=True, **FAST)
    copy, triad = df.to_dict("records")
    assert (copy["kind"], triad["kind"]) == ("copy", "triad")
    assert copy["buffer_bytes"] == 1 << 20
    assert copy["bytes_moved"] == 2 << 20 and triad["bytes_moved"] == 3 << 20
    for row in (copy, triad):
        assert _sane(row["bytes_per_s"])
        assert row["bytes_per_s"] == pytest.approx(row["bytes_moved"] / row["time_s"])


def test_measured_accelerator(measured):
    acc = measured
    assert isinstance(acc, Accelerator) and acc.measured
    assert acc.name.startswith("measured: ")
    assert set(acc.peak_flops_per_s) == {"fp32", "bf16"}
    assert all(_sane(r) for r in acc.peak_flops_per_s.values())
    assert _sane(acc.memory_bandwidth_bytes_per_s) and acc.memory_bytes > 0
    assert acc.ridge_point("fp32") > 0
    assert torch.__version__ in acc.source and "threads" in acc.source
    # the peak is the best of the raw per-shape rows kept in extra
    fp32_rows = [r for r in acc.extra["matmul"] if r["dtype"] == "fp32"]
    assert len(fp32_rows) == 2
    assert acc.peak("fp32") == max(r["flops_per_s"] for r in fp32_rows)
    assert acc.memory_bandwidth_bytes_per_s == acc.extra["bandwidth"][0]["bytes_per_s"]
    # the Accelerator validates itself again when rebuilt from its own fields
    dataclasses.replace(acc)


def test_saved_json_uses_field_names_and_loads_back(measured, tmp_path):
    """The saved file is a user accelerator file: Accelerator field names only, and the
    catalog's loader rebuilds the same measured spec from it."""
    from perfmodel.hardware.catalog import load_accelerator_file

    path = tmp_path / "measured.json"
    save_accelerator(measured, path)
    data = json.loads(path.read_text())
    assert set(data) <= {f.name for f in dataclasses.fields(Accelerator)}
    back = load_accelerator_file(path)
    assert back.measured and back.name == measured.name
    assert back.peak_flops_per_s == pytest.approx(dict(measured.peak_flops_per_s))
    assert back.memory_bandwidth_bytes_per_s == pytest.approx(measured.memory_bandwidth_bytes_per_s)
    assert back.ridge_point("fp32") == pytest.approx(measured.ridge_point("fp32"))
    assert back.extra["matmul"] == measured.extra["matmul"]


def test_cuda_probe_quick():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    before = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    acc = measure_device(["fp32", "tf32", "bf16"], device="cuda", shapes=[(1024, 1024, 1024)],
                         buffer_bytes=256 << 20, trials=3, min_time_s=0.01)
    assert acc.measured and acc.name.startswith("measured: ")
    assert all(_sane(r) for r in acc.peak_flops_per_s.values())
    assert acc.sm_count and acc.memory_bytes > 0 and "CUDA" in acc.source
    # the TF32 switches are restored, not left as the last dtype set them
    assert (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()) == before


def test_matmul_precision_is_restored():
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        measure_matmul("fp32", [(16, 16, 16)], device="cpu", **FAST)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(saved)
