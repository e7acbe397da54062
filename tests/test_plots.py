"""perfmodel.plots: files written in the format the extension names, and figures whose
axes, scales and marks say what the charts promise.

Independent sources: the file formats' magic numbers (PNG signature, PDF header, SVG
XML root), the A100 80GB SXM datasheet (312 TFLOP/s bf16 dense, 2,039 GB/s) for the
roof and ridge, and the drawn curves themselves for the balance crossing (found here
by linear interpolation, independently of the library's solver).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from perfmodel.cli import main
from perfmodel.hardware.catalog import get_accelerator
from perfmodel import api
from perfmodel.errors import PerfmodelError
from perfmodel.options import Options
from perfmodel.plots import balance_chart, bar_chart, roofline_chart, sweep_chart
from perfmodel.presets import load_model
from perfmodel.roofline import Efficiency
from perfmodel.scenario import Scenario

A100 = get_accelerator("a100-80gb-sxm")
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}


def decode(model="gpt2", batch=8, context=512, acc=A100, efficiency=None) -> Scenario:
    return Scenario(load_model(model), Options(phase="decode"), batch=batch, context=context,
                    accelerator=acc, efficiency=efficiency)


def assert_file(path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000
    if path.suffix == ".svg":
        assert b"<svg" in data[:2000] and data.rstrip().endswith(b"</svg>")
    else:
        assert data.startswith(MAGIC[path.suffix])


# ---------------------------------------------------------------- roofline chart


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_roofline_chart_writes_each_format(suffix, tmp_path):
    path = tmp_path / f"roof{suffix}"
    roofline_chart(decode(), path)
    assert_file(path)


def test_roofline_chart_axes_roof_and_points(tmp_path):
    sc = decode(efficiency=Efficiency(0.8, 0.9))
    fig = roofline_chart(sc, tmp_path / "roof.png")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "Arithmetic intensity (FLOP/byte)"
    assert ax.get_ylabel().startswith("Attainable performance (TFLOP/s")
    title = ax.get_title()
    for part in ("gpt2", "A100 80GB SXM", "decode", "batch 8", "context 512", "weights bf16", "KV cache bf16"):
        assert part in title
    # The roof tops out at the datasheet's 312 TFLOP/s; the ridge marker sits at
    # 312e12 / 2.039e12 = 153.0 FLOP/byte; the expected roof (dashed) at 0.8 × 312.
    roof, expected = ax.lines[0], ax.lines[1]
    assert max(roof.get_ydata()) == pytest.approx(312, rel=1e-12)
    assert expected.get_linestyle() == "--" and max(expected.get_ydata()) == pytest.approx(0.8 * 312, rel=1e-12)
    ridge = next(line for line in ax.lines if line.get_marker() == "D")
    assert ridge.get_xdata()[0] == pytest.approx(312 / 2.039, rel=1e-12)
    # One marker per forward operator that has both FLOPs and bytes, every one on or
    # under the roof min(312, 2.039 · intensity) TFLOP/s.
    frame = api.roofline_report(sc)
    drawable = frame[(frame["flops"] > 0) & (frame["bytes"] > 0)]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(offsets) == len(drawable)
    for x, y in offsets:
        assert y <= min(312, 2.039 * x) * (1 + 1e-9)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("ridge point" in t for t in legend) and any("memory-bound operator" in t for t in legend)


def test_roofline_labels_do_not_overlap(tmp_path):
    # The promise: labels readable at a glance, so no two label boxes overlap.
    fig = roofline_chart(decode("llama-3-8b", batch=64, context=4096, acc=get_accelerator("h100-sxm")), tmp_path / "r.png")
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    notes = [t for t in ax.texts if hasattr(t, "xy")]
    assert len(notes) >= 3
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in notes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)


def test_prefill_has_compute_bound_points(tmp_path):
    # A 2048-token prefill's big matmuls have intensity ≈ 2048·4096·k/(...) ≫ 153: right of the ridge.
    sc = Scenario(load_model("llama-2-7b"), Options(phase="prefill"), seq=2048, accelerator=A100)
    fig = roofline_chart(sc, tmp_path / "p.png")
    (ax,) = fig.axes
    compute = [c for c in ax.collections if c.get_label().startswith("compute-bound")]
    assert compute and all(x > 312 / 2.039 for x, _ in compute[0].get_offsets())


# ---------------------------------------------------------------- balance chart


def crossing(x, a, b) -> float:
    """Where a − b changes sign, by linear interpolation in log x."""
    diff = np.asarray(a) - np.asarray(b)
    i = int(np.flatnonzero(np.sign(diff[:-1]) != np.sign(diff[1:]))[0])
    lx = np.log(x[i]) + (np.log(x[i + 1]) - np.log(x[i])) * diff[i] / (diff[i] - diff[i + 1])
    return float(np.exp(lx))


def test_balance_chart_marks_where_the_curves_cross(tmp_path):
    sc = decode("llama-2-7b", batch=1, context=0)
    fig = balance_chart(sc, tmp_path / "b.png")
    assert_file(tmp_path / "b.png")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("Batch") and "ms" in ax.get_ylabel()
    compute, memory = ax.lines[0], ax.lines[1]
    assert compute.get_label().startswith("compute time") and memory.get_label().startswith("memory time")
    x = compute.get_xdata()
    seen = crossing(x, compute.get_ydata(), memory.get_ydata())
    marker = next(line for line in ax.lines if line.get_marker() == "o")
    assert marker.get_xdata()[0] == pytest.approx(seen, rel=1e-3)
    assert x[0] == 1 and x[-1] == pytest.approx(4 * marker.get_xdata()[0])
    # the library's balance batch, printed on the chart
    b = api.balance(sc)["balance_batch"].iloc[0]
    assert any(f"{b:.4g}" in t.get_text() for t in ax.texts)
    for part in ("llama-2-7b", "A100 80GB SXM", "context 0", "weights bf16"):
        assert part in ax.get_title()


def test_balance_chart_says_when_there_is_none(tmp_path):
    # llama-2-7b (MHA) at 4k context on an A100 never balances (see test_balance.py)
    fig = balance_chart(decode("llama-2-7b", batch=1, context=4096), tmp_path / "none.svg")
    assert_file(tmp_path / "none.svg")
    (ax,) = fig.axes
    assert ax.get_xlim()[1] == 1024
    assert any(t.get_text().startswith("No balance point") for t in ax.texts)
    assert not any(line.get_marker() == "o" for line in ax.lines)


# ---------------------------------------------------------------- generic frames


def test_bar_chart(tmp_path):
    frame = pd.DataFrame({"model": ["a", "b", "c"], "time_s": [1e-3, 2e-3, 5e-4]})
    fig = bar_chart(frame, "time_s", tmp_path / "bars.pdf")
    assert_file(tmp_path / "bars.pdf")
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == [1e-3, 2e-3, 5e-4]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylabel() == "time (s)" and ax.get_yscale() == "linear"
    wide = pd.DataFrame({"gpu": ["x", "y"], "tokens_per_s": [10.0, 1e5]})  # spans 10⁴×: log
    assert bar_chart(wide, "tokens_per_s", tmp_path / "w.png", label_column="gpu").axes[0].get_yscale() == "log"


def grid() -> pd.DataFrame:
    rows = [{"batch": b, "context": c, "time_s": b * c * 1e-6} for b in (1, 8, 64) for c in (1024, 2048, 4096, 8192)]
    return pd.DataFrame(rows)


def test_sweep_chart_lines(tmp_path):
    fig = sweep_chart(grid(), "time_s", tmp_path / "lines.png")
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "context (cached tokens per sequence)" and ax.get_ylabel() == "time (s)"
    line = ax.lines[2]  # batch 64
    assert list(line.get_xdata()) == [1024, 2048, 4096, 8192]
    assert list(line.get_ydata()) == pytest.approx([64 * c * 1e-6 for c in (1024, 2048, 4096, 8192)])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["batch = 1", "batch = 8", "batch = 64"]


def test_sweep_chart_heatmap(tmp_path):
    fig = sweep_chart(grid(), "time_s", tmp_path / "heat.svg", kind="heatmap")
    assert_file(tmp_path / "heat.svg")
    ax = fig.axes[0]
    (image,) = ax.images
    cells = image.get_array()
    assert cells.shape == (3, 4)
    assert cells[2, 3] == pytest.approx(64 * 8192 * 1e-6)  # row batch 64, column context 8192
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "8", "64"]


def test_bad_requests_are_errors(tmp_path):
    with pytest.raises(PerfmodelError, match="must end in"):
        roofline_chart(decode(), tmp_path / "roof.gif")
    with pytest.raises(PerfmodelError, match="no column 'latency'"):
        bar_chart(grid(), "latency", tmp_path / "x.png", label_column="batch")
    with pytest.raises(PerfmodelError, match="kind"):
        sweep_chart(grid(), "time_s", tmp_path / "x.png", kind="pie")
    with pytest.raises(PerfmodelError, match="several rows"):
        sweep_chart(pd.concat([grid(), grid()]), "time_s", tmp_path / "x.png")
    with pytest.raises(PerfmodelError, match="needs an accelerator"):
        roofline_chart(decode(acc=None), tmp_path / "x.png")


def test_cli_plot_bad_extension(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["roofline", "--model", "gpt2", "--gpu", "a100", "--plot", str(tmp_path / "r.jpg")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: plot") and err.count("\n") == 1


def test_cli_balance_plot(tmp_path, capsys):
    main(["balance", "--model", "gpt2", "--gpu", "a100", "--plot", str(tmp_path / "b.png")])
    assert_file(tmp_path / "b.png")
    assert "balance_batch" in capsys.readouterr().out


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, perfmodel.plots; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
