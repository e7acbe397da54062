"""The roofline: per-operator time = max(FLOPs / peak, bytes / bandwidth), its bound,
the ridge point, efficiencies, and bad input through the command line.

Independent sources: the datasheet numbers (as cited in hardware/data/gpu-specs.csv),
written out here, and hand derivations of one matmul's FLOPs and bytes:
- NVIDIA H100 datasheet, SXM column: BF16 "1,979*" TFLOPS with sparsity -> 989.5 dense;
  "3.35TB/s" HBM3; FP32 "67 teraFLOPS" (the non-tensor, vector rate).
- NVIDIA A100 80GB datasheet, SXM column: BF16 "312 | 624*" TFLOPS -> 312 dense;
  "2,039GB/s" HBM2e; FP32 "19.5 TFLOPS".
- Llama 2 7B: meta-llama/Llama-2-7b-hf config.json (d=4096, d_ff=11008, 32 layers,
  vocab 32000); 6,738,415,616 parameters (LlamaForCausalLM.num_parameters()).
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest

import perfmodel as pm
from perfmodel.cli import main
from perfmodel import api
from perfmodel.hardware.catalog import get_accelerator
from perfmodel.evaluate import value
from perfmodel.ops.base import Site, linear
from perfmodel.roofline import Efficiency, Roof, bound, op_times

T, G = 10**12, 10**9
DATASHEET = {
    "h100-sxm": {"bf16": Fraction(1979, 2) * T, "bandwidth": 3350 * G, "fp32": 67 * T},
    "a100-80gb-sxm": {"bf16": 312 * T, "bandwidth": 2039 * G, "fp32": Fraction(39, 2) * T},
}


def times(m: int, k: int, n: int, gpu: str, efficiency: Efficiency = Efficiency()):
    """(compute_s, memory_s, time_s) of the matmul on ``gpu`` from the library."""
    from perfmodel import symbols as S

    (op,) = linear(Site(), "x", k, n, "ffn", rows=m).ops
    (t,) = op_times([op], Roof.of(get_accelerator(gpu), "bf16", efficiency))
    values = {S.B_w: 2, S.B_a: 2}
    return value(t.compute_s, values), value(t.memory_s, values), value(t.time_s, values)


def hand(m: int, k: int, n: int, gpu: str, e_c: Fraction = Fraction(1), e_m: Fraction = Fraction(1)):
    """By hand: 2·m·k·n FLOPs; bf16 reads A [m,k] and W [k,n], writes C [m,n], 2 bytes each."""
    flops = 2 * m * k * n
    nbytes = 2 * (m * k + k * n + m * n)
    sheet = DATASHEET[gpu]
    return flops / (sheet["bf16"] * e_c), nbytes / (sheet["bandwidth"] * e_m), Fraction(flops, nbytes)


@pytest.mark.parametrize("gpu", ["h100-sxm", "a100-80gb-sxm"])
def test_square_gemm_is_compute_bound(gpu):
    # 4096³: 2·4096³ = 137,438,953,472 FLOPs over 3·4096²·2 = 100,663,296 bytes,
    # intensity 4096/3 ≈ 1365 FLOP/byte, far right of both ridges (≈295 and ≈153).
    compute, memory, time = times(4096, 4096, 4096, gpu)
    c, m, intensity = hand(4096, 4096, 4096, gpu)
    assert intensity == Fraction(4096, 3)
    assert compute == pytest.approx(float(c), rel=1e-12)
    assert memory == pytest.approx(float(m), rel=1e-12)
    assert time == compute and bound(compute, memory) == "compute"
    # H100: 137.4e9 / 989.5e12 = 138.9 µs; A100: 137.4e9 / 312e12 = 440.5 µs
    assert time == pytest.approx({"h100-sxm": 138.897e-6, "a100-80gb-sxm": 440.510e-6}[gpu], rel=1e-5)


@pytest.mark.parametrize("gpu", ["h100-sxm", "a100-80gb-sxm"])
def test_gemv_is_memory_bound(gpu):
    # 1×4096×4096: 33,554,432 FLOPs over (4096 + 4096² + 4096)·2 = 33,570,816 bytes:
    # intensity ≈ 1 FLOP/byte, so the weight read sets the time.
    compute, memory, time = times(1, 4096, 4096, gpu)
    c, m, intensity = hand(1, 4096, 4096, gpu)
    assert intensity == Fraction(33_554_432, 33_570_816)
    assert memory == pytest.approx(float(m), rel=1e-12)
    assert compute == pytest.approx(float(c), rel=1e-12)
    assert time == memory and bound(compute, memory) == "memory"
    # H100: 33,570,816 / 3.35e12 = 10.02 µs; A100: / 2.039e12 = 16.46 µs
    assert time == pytest.approx({"h100-sxm": 10.0212e-6, "a100-80gb-sxm": 16.4644e-6}[gpu], rel=1e-4)


def test_ridge_points_from_datasheets():
    # ridge = peak / bandwidth: H100 989.5e12 / 3.35e12 = 295.37; A100 312e12 / 2.039e12 = 153.02
    for gpu, ridge in (("h100-sxm", 295.373), ("a100-80gb-sxm", 153.016)):
        sheet = DATASHEET[gpu]
        roof = Roof.of(get_accelerator(gpu), "bf16")
        assert roof.ridge_point == Fraction(sheet["bf16"]) / sheet["bandwidth"]
        assert float(roof.ridge_point) == pytest.approx(ridge, rel=1e-5)
        assert get_accelerator(gpu).ridge_point("bf16") == pytest.approx(ridge, rel=1e-5)


def test_fp8_doubles_the_h100_ridge():
    # H100 datasheet FP8 "3,958*" -> 1979 dense: twice the bf16 rate, same bandwidth
    assert Roof.of(get_accelerator("h100-sxm"), "fp8").ridge_point == 2 * Roof.of(get_accelerator("h100-sxm"), "bf16").ridge_point


def test_efficiencies_scale_each_term_and_the_ridge():
    # e_c = 0.8 divides compute time by 0.8; e_m = 0.9 divides memory time by 0.9;
    # the ridge moves by 0.8 / 0.9.
    e = Efficiency(0.8, 0.9)
    for shape in ((4096, 4096, 4096), (1, 4096, 4096)):
        compute, memory, time = times(*shape, "h100-sxm", e)
        c, m, _ = hand(*shape, "h100-sxm", Fraction(4, 5), Fraction(9, 10))
        assert compute == pytest.approx(float(c), rel=1e-12)
        assert memory == pytest.approx(float(m), rel=1e-12)
        assert time == max(compute, memory)
    pure = Roof.of(get_accelerator("h100-sxm"), "bf16")
    assert Roof.of(get_accelerator("h100-sxm"), "bf16", e).ridge_point == pure.ridge_point * Fraction(8, 9)


def test_bandwidth_efficiency_can_flip_the_bound():
    # A square 1200³ GEMM: intensity 2·1200³ / (3·1200²·2) = 400 FLOP/byte. The pure H100
    # ridge is 295 (compute-bound); at half the bandwidth the ridge is 591 (memory-bound).
    c, m, intensity = hand(1200, 1200, 1200, "h100-sxm")
    assert intensity == 400 and c > m
    compute, memory, _ = times(1200, 1200, 1200, "h100-sxm")
    assert bound(compute, memory) == "compute"
    compute, memory, time = times(1200, 1200, 1200, "h100-sxm", Efficiency(1.0, 0.5))
    assert bound(compute, memory) == "memory"
    assert time == pytest.approx(float(2 * m), rel=1e-12)


def test_llama2_7b_decode_at_batch_1_reads_its_weights_once():
    # Hand: decode of one token at context 0 reads every matmul and norm weight once
    # (6,738,415,616 parameters less the 32000×4096 embedding table, of which only
    # one 4096-row is read) at 2 bytes: 13,214,695,424 bytes. Activations of one
    # token add < 0.2% (≈ 30 vectors of ≤ 11008 elements per layer, 32 layers ≈ 21 MB).
    weights_read = 2 * (6_738_415_616 - 32000 * 4096 + 4096)
    sc = pm.Scenario(pm.load_model("llama-2-7b"), pm.Options(phase="decode"), batch=1, context=0,
                     accelerator=get_accelerator("a100-80gb-sxm"))
    row = api.roofline_report(sc, by="total").iloc[0]
    floor = weights_read / 2039e9
    assert floor < row["time_s"] < 1.002 * floor
    assert row["ridge_point_flop_per_byte"] == pytest.approx(312 / 2.039, rel=1e-9)
    ops = api.roofline_report(sc, by="operator")
    weighted = ops[ops["operator"].str.endswith("_proj") | (ops["operator"] == "lm_head")]
    assert set(weighted["bound"]) == {"memory"}


# ---------------------------------------------------------------- the command line


def run(args: list[str], capsys) -> tuple[int, str, str]:
    """``perfmodel ARGS`` in-process through ``cli.main`` (what the console script runs)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_roofline_json_has_the_promised_columns(capsys):
    # CLI.md: roofline JSON columns operator, flops, bytes, time_s, bound
    code, out, _ = run(["roofline", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--format", "json"], capsys)
    assert code == 0
    rows = json.loads(out)
    assert {"operator", "flops", "bytes", "time_s", "bound"} <= set(rows[0])
    assert {r["bound"] for r in rows} <= {"compute", "memory"}


def test_unknown_gpu_lists_suggestions(capsys):
    code, _, err = run(["roofline", "--model", "llama-3-8b", "--gpu", "h1000"], capsys)
    assert_one_line_error(code, err, "unknown accelerator 'h1000'", "did you mean", "h100")


@pytest.mark.parametrize(
    "args, fragments",
    [
        # V100 datasheet: no bfloat16 tensor cores (FP16 125 TFLOPS, FP32 15.7)
        (["--gpu", "v100", "--act-dtype", "bf16"], ["V100", "no published peak for bf16", "fp16"]),
        # A100 datasheet: no FP8
        (["--gpu", "a100", "--act-dtype", "fp8"], ["A100", "no published peak for fp8"]),
    ],
)
def test_dtype_without_a_peak_is_refused(args, fragments, capsys):
    code, _, err = run(["roofline", "--model", "llama-3-8b", *args], capsys)
    assert_one_line_error(code, err, *fragments)


GOOD_FILE = {"name": "test part", "memory_bytes": 2**34, "memory_bandwidth_bytes_per_s": 10**12,
             "peak_flops_per_s": {"bf16": 10**14}}


@pytest.mark.parametrize(
    "text, fragments",
    [
        ('{"name": "broken", "memory_bytes": ', ["malformed JSON"]),
        (json.dumps({**GOOD_FILE, "memory_bandwidth_bytes_per_s": 0}), ["memory_bandwidth_bytes_per_s", "positive"]),
        (json.dumps({**GOOD_FILE, "memory_bandwidth_bytes_per_s": -5e11}), ["memory_bandwidth_bytes_per_s", "positive"]),
        (json.dumps({**GOOD_FILE, "peak_flops_per_s": {"bf16": 0}}), ["peak_flops_per_s.bf16", "positive"]),
    ],
    ids=["malformed", "zero-bandwidth", "negative-bandwidth", "zero-peak"],
)
def test_bad_accelerator_file_is_refused(text, fragments, tmp_path, capsys):
    path = tmp_path / "part.json"
    path.write_text(text)
    code, _, err = run(["roofline", "--model", "llama-3-8b", "--gpu", str(path)], capsys)
    assert_one_line_error(code, err, "part.json", *fragments)


def test_good_accelerator_file_is_used(tmp_path, capsys):
    # A made-up part, 100 TFLOP/s and 1 TB/s: decode at batch 1 is memory-bound on the weights.
    path = tmp_path / "part.json"
    path.write_text(json.dumps(GOOD_FILE))
    code, out, _ = run(["roofline", "--model", "llama-3-8b", "--gpu", str(path), "--by", "total", "--format", "json"], capsys)
    assert code == 0
    row = json.loads(out)[0]
    assert row["gpu"] == "test part" and row["ridge_point_flop_per_byte"] == 100


def test_error_path_end_to_end_in_a_subprocess():
    # The console entry point as a user runs it: one line on stderr, exit 2, no traceback.
    proc = subprocess.run([sys.executable, "-m", "perfmodel", "roofline", "--model", "llama-3-8b", "--gpu", "a100", "--act-dtype", "fp8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert proc.stdout == ""
