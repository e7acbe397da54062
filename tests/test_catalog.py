"""Tests of the accelerator catalog. Every expected number below comes from a source
named beside it (a datasheet as cited in gpu-specs.csv, hw-notes.md, or the CSV cell
itself read with Decimal here), never from the catalog's own output."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from perfmodel.hardware.accelerator import Accelerator
from perfmodel.hardware.catalog import (
    accelerator_from_dict,
    accelerator_to_dict,
    aliases,
    catalog,
    catalog_frame,
    dump_accelerator_file,
    get_accelerator,
    load_accelerator_file,
)
from perfmodel.errors import PerfmodelError, UnknownNameError
from perfmodel.units import DTYPES

DATA = Path(__file__).resolve().parents[1] / "hardware" / "data"
SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpu-specs.csv"
T = 10**12
GiB = 2**30


def csv_rows() -> list[dict[str, str]]:
    """The shared table's rows, then the rows added in this repository (gpu-specs-added.csv)."""
    rows = []
    for name in ("gpu-specs.csv", "gpu-specs-added.csv"):
        with open(DATA / name, newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    return rows


# ------------------------------------------------------------ datasheet values


def test_h100_sxm_dense_bf16_and_fp8_are_datasheet_sparse_halved():
    # NVIDIA H100 datasheet, SXM column: BF16 "1,979*", FP8 "3,958*",
    # footnote "* Shown with sparsity. Specifications 1/2 lower without sparsity."
    h100 = get_accelerator("h100-sxm")
    assert h100.peak("bf16") == Fraction(1979 * T, 2) == 989_500_000_000_000
    assert h100.peak("fp16") == 1979 * T // 2
    assert h100.peak("fp8") == 3958 * T // 2 == 1979 * T
    assert h100.memory_bandwidth_bytes_per_s == 3350 * 10**9  # datasheet "3.35TB/s"


def test_a100_bandwidths_from_datasheet():
    # NVIDIA A100 datasheet: 80GB SXM "2,039 GB/s", 40GB "1,555 GB/s", 80GB PCIe "1,935 GB/s"
    assert get_accelerator("a100-80gb-sxm").memory_bandwidth_bytes_per_s == 2_039_000_000_000
    assert get_accelerator("a100-40gb-sxm").memory_bandwidth_bytes_per_s == 1_555_000_000_000
    assert get_accelerator("a100-80gb-pcie").memory_bandwidth_bytes_per_s == 1_935_000_000_000
    # same datasheet: BF16 "312 TF | 624 TF*" (dense | sparse)
    assert get_accelerator("a100").peak("bf16") == 312 * T


def test_mi300x_dense_bf16_from_amd_spec_page():
    # AMD Instinct MI300X spec page: FP16/BF16 1307.4 TFLOPS dense (2614.9 "with sparsity")
    mi300x = get_accelerator("mi300x")
    assert mi300x.peak("bf16") == 1_307_400_000_000_000
    assert mi300x.memory_bandwidth_bytes_per_s == 5_300_000_000_000  # "5.3 TB/s"


def test_b200_dense_is_half_the_blackwell_table_and_agrees_with_fa4():
    # HGX B200 table "FP16/BF16 4.5 PF*" -> 2.25 PF dense (hw-notes §1); FA4 reports
    # 1613 TFLOP/s as "approximately 71%" of the maximum: 1613/2250 = 0.717
    b200 = get_accelerator("b200")
    assert b200.peak("bf16") == Fraction(45, 10) * 10**15 / 2
    assert round(1613e12 / b200.peak("bf16"), 2) in (0.71, 0.72)


def test_b300_dense_is_the_hgx_b300_table_per_gpu_halved():
    # NVIDIA HGX B300 table, 8 GPUs, * = with sparsity: FP8 72 PF*, FP16/BF16 36 PF*, TF32 18 PF*,
    # FP32 600 TF (not sparse); per GPU /8, tensor values /2. "Inside NVIDIA Blackwell Ultra"
    # (NVIDIA technical blog): 8 TB/s HBM3e, NVLink 5 1.8 TB/s bidirectional per GPU.
    b300 = get_accelerator("b300")
    assert b300.peak("fp8") == Fraction(72, 8 * 2) * 10**15
    assert b300.peak("bf16") == b300.peak("fp16") == Fraction(36, 8 * 2) * 10**15
    assert b300.peak("tf32") == Fraction(18, 8 * 2) * 10**15
    assert b300.peak("fp32") == Fraction(600, 8) * T
    assert b300.memory_bandwidth_bytes_per_s == 8 * 10**12
    assert b300.interconnect_bytes_per_s == Fraction(18, 10) * 10**12
    # MLPerf's part name B300-SXM-270GB: 270 usable of 288 (8 x 36 GiB HBM3e stacks)
    assert b300.memory_bytes == 270 * GiB < 8 * 36 * GiB
    # stas00/ml-engineering MAMF table: theory 2250 bf16 / 4500 fp8 are these dense peaks
    assert b300.peak("bf16") == 2250 * T and b300.peak("fp8") == 4500 * T
    assert "int8" not in b300.peak_flops_per_s  # sources disagree: left blank, never guessed


def test_gb300_dense_is_the_nvl72_rack_per_gpu_halved():
    # NVIDIA GB300 NVL72 spec, 72 GPUs: FP8/FP6 720 PF*, FP4 1440 PF* (1080 dense), 576 TB/s HBM3e,
    # 130 TB/s NVLink (72 x 1.8 TB/s); "Inside NVIDIA Blackwell Ultra": up to 1,400 W.
    gb300 = get_accelerator("gb300")
    assert gb300.peak("fp8") == Fraction(720, 72 * 2) * 10**15
    assert gb300.memory_bandwidth_bytes_per_s == Fraction(576, 72) * 10**12
    assert gb300.interconnect_bytes_per_s == Fraction(18, 10) * 10**12
    assert gb300.tdp_w == 1400
    # rack dense FP16/BF16 180 PF (verda.com's GB300 NVL72 table) / 72; half FP8, as on B200/GB200
    assert gb300.peak("bf16") == Fraction(180, 72) * 10**15 == gb300.peak("fp8") / 2
    # the GB300-over-B300 clock ratio is GB200-over-B200's (5 vs 4.5 PF FP8 in both tables)
    assert Fraction(gb300.peak("fp8"), get_accelerator("b300").peak("fp8")) == \
        Fraction(get_accelerator("gb200").peak("fp8"), get_accelerator("b200").peak("fp8"))


def test_rtx_3090_fractional_link_and_mi250x_fractional_bandwidth_stay_exact():
    # GA102 whitepaper: NVLink bridge 112.5 GB/s; AMD MI250X page: 3.2768 TB/s
    assert get_accelerator("rtx-3090").interconnect_bytes_per_s == 112_500_000_000
    assert get_accelerator("mi250x").memory_bandwidth_bytes_per_s == 3_276_800_000_000
    # L40S datasheet prints BF16 "362.05" dense
    assert get_accelerator("l40s").peak("bf16") == 362_050_000_000_000


# ------------------------------------------------------------ peak from clock (hw-notes §2)


@pytest.mark.parametrize(
    "name, clock_mhz, fma_per_clk, sm_count, cores_per_sm, half_unit",
    [
        # H100 SXM: 1830 MHz x 512 x 2 x 528 = 989.4 TF; the datasheet prints the sparse
        # "1,979*" to 1 TF, so the dense value is known to +-0.25 TF
        ("h100-sxm", 1830, 512, 132, 4, Fraction(1, 4) * T),
        # A100: 1410 MHz x 256 x 2 x 432 = 311.9 TF; the datasheet prints "312" to 1 TF
        ("a100-80gb-sxm", 1410, 256, 108, 4, Fraction(1, 2) * T),
        # MI300X: 2100 MHz x 256 x 2 x 1216 = 1307.4 TF; AMD prints 1307.4 to 0.1 TF
        ("mi300x", 2100, 256, 304, 4, Fraction(1, 20) * T),
    ],
)
def test_bf16_peak_matches_clock_formula(name, clock_mhz, fma_per_clk, sm_count, cores_per_sm, half_unit):
    acc = get_accelerator(name)
    # tensor/matrix cores = 4 per SM or CU (Ampere/Hopper whitepapers, CDNA3 whitepaper)
    assert acc.sm_count == sm_count
    formula = clock_mhz * 10**6 * fma_per_clk * 2 * (sm_count * cores_per_sm)
    assert abs(formula - acc.peak("bf16")) <= half_unit


# ------------------------------------------------------------ every CSV row, cell by cell


def test_data_csv_is_the_shared_csv_unchanged():
    if not SHARED_CSV.exists():
        pytest.skip("shared/data/gpu-specs.csv not beside this checkout")
    assert (DATA / "gpu-specs.csv").read_bytes() == SHARED_CSV.read_bytes()


def test_every_csv_row_is_in_the_catalog_once():
    names = [row["name"] for row in csv_rows()]
    assert len(names) == 25
    assert sorted(acc.name for acc in catalog().values()) == sorted(names)
    for name in names:
        assert get_accelerator(name).name == name


COLUMNS = {"fp32": "fp32_tflops", "tf32": "tf32_tflops_dense", "bf16": "bf16_tflops_dense",
           "fp16": "fp16_tflops_dense", "fp8": "fp8_tflops_dense", "int8": "int8_tops_dense"}


@pytest.mark.parametrize("row", csv_rows(), ids=lambda r: r["name"])
def test_row_converted_by_the_stated_unit_rules(row):
    # source: the CSV cell, converted here with Decimal (TFLOP/s x 1e12, GB/s x 1e9,
    # label GB x 2**30 per the capacity rule, MB of L2 x 2**20); blank cell = no peak
    acc = get_accelerator(row["name"])
    for dtype, column in COLUMNS.items():
        if row[column]:
            assert acc.peak(dtype) == Decimal(row[column]) * T
            assert isinstance(acc.peak(dtype), int)
        else:
            assert dtype not in acc.peak_flops_per_s
    assert "int4" not in acc.peak_flops_per_s
    assert acc.memory_bandwidth_bytes_per_s == Decimal(row["mem_bw_gbps"]) * 10**9
    assert acc.memory_bytes == int(row["memory_gb"]) * GiB
    assert acc.vector_flops_per_s == (Decimal(row["fp32_tflops"]) * T if row["fp32_tflops"] else None)
    assert acc.l2_bytes == (Decimal(row["l2_mb"]) * 2**20 if row["l2_mb"] else None)
    link = row["nvlink_gbps_bidir"]
    assert acc.interconnect_bytes_per_s == (Decimal(link) * 10**9 if link else None)
    assert acc.source == row["source"] and acc.vendor == row["vendor"]
    assert acc.key and acc.notes and acc.efficiency_source


def test_memory_capacity_label_is_gib():
    # A100 80GB: 80 GiB (5 HBM2e stacks x 16 GiB); TPU v4 docs say "32 GiB" outright
    assert get_accelerator("a100").memory_bytes == 80 * 2**30
    assert get_accelerator("tpu-v4").memory_bytes == 32 * 2**30


@pytest.mark.parametrize(
    "name, nvidia_smi_mib",
    # memory.total printed by nvidia-smi on these parts (public logs): the label read as
    # GiB is at most 0.6% above it, read as decimal GB it would be 4-7% below it
    [("h100-sxm", 81559), ("h100-nvl", 95830), ("h200", 143771), ("b200", 183359), ("gb200", 189471)],
)
def test_gib_label_matches_what_the_driver_reports(name, nvidia_smi_mib):
    acc = get_accelerator(name)
    driver = nvidia_smi_mib * 2**20
    assert driver <= acc.memory_bytes <= driver * 1.006
    label_gb = acc.memory_bytes // GiB
    assert label_gb * 10**9 < driver * 0.97


def test_link_zero_means_none_and_blank_means_unknown():
    # gpu-specs-notes.md: nvlink_gbps_bidir "0 means none"; TPU v4 "ICI bandwidth not captured"
    assert get_accelerator("rtx-4090").interconnect_bytes_per_s == 0
    assert get_accelerator("tpu-v4").interconnect_bytes_per_s is None
    assert get_accelerator("h100").interconnect_bytes_per_s == 900 * 10**9  # H100 datasheet NVLink 900GB/s


def test_h100_l2_is_50_mib():
    # FA3 paper Table 1 (quoted in hw-notes §4): H100 SXM5 L2 is 50 MiB
    assert get_accelerator("h100").l2_bytes == 50 * 2**20


# ------------------------------------------------------------ missing peaks


@pytest.mark.parametrize(
    "name, dtype",
    # gpu-specs-notes.md: Volta has no BF16/TF32/FP8 and no INT8 tensor mode; TPU v5p
    # FP8 left blank; Gaudi 2 publishes only BF16/FP8; no part lists int4
    [("v100", "bf16"), ("v100", "int8"), ("tpu-v5p", "fp8"), ("tpu-v5e", "fp8"), ("gaudi2", "fp16"),
     ("h100", "int4"), ("mi250x", "tf32")],
)
def test_dtype_without_a_published_peak_raises(name, dtype):
    acc = get_accelerator(name)
    with pytest.raises(PerfmodelError, match=dtype):
        acc.peak(dtype)


def test_tpu_and_gaudi2_have_no_vector_rate():
    # gpu-specs.csv: fp32_tflops blank for TPUs and Gaudi 2
    assert get_accelerator("tpu-v5e").vector_peak is None
    assert get_accelerator("gaudi2").vector_peak is None


# ------------------------------------------------------------ efficiencies (hw-notes §4)


@pytest.mark.parametrize(
    "name, mamf_tflops",
    # hw-notes §4 MAMF table (BF16 TFLOP/s measured at the best shape)
    [("a100-80gb-sxm", Decimal("271.2")), ("a100-40gb-sxm", Decimal("271.2")), ("a100-pcie", Decimal("252.9")),
     ("h100", Decimal("794.5")), ("h200", Decimal("794.5")), ("b200", Decimal("1745")),
     ("gb200", Decimal("1822")), ("mi300x", Decimal("668.4")), ("mi325x", Decimal("784.9")),
     ("gaudi2", Decimal("418.7")), ("gaudi3", Decimal("1243")), ("b300", Decimal("1769"))],
)
def test_matmul_efficiency_times_peak_is_the_measured_mamf(name, mamf_tflops):
    acc = get_accelerator(name)
    assert acc.matmul_efficiency * acc.peak("bf16") == pytest.approx(float(mamf_tflops * T), rel=1e-12)


def test_efficiency_values_quoted_in_hw_notes():
    # hw-notes §4: A100 SXM 86.9%, H100 SXM 80.3%, B200 77.6%; H100/H200 family 0.75-0.80
    assert round(get_accelerator("a100").matmul_efficiency, 3) == 0.869
    assert round(get_accelerator("h100").matmul_efficiency, 3) == 0.803
    assert round(get_accelerator("b200").matmul_efficiency, 3) == 0.776
    assert 0.75 <= get_accelerator("h100-pcie").matmul_efficiency <= 0.80
    # stas00/ml-engineering MAMF table: B300 SXM bf16 1769 of 2250 = 78.6%, fp8 3353.3 of 4500 = 74.5%
    assert round(get_accelerator("b300").matmul_efficiency, 3) == 0.786
    assert round(get_accelerator("b300").extra["matmul_efficiency_fp8"], 3) == 0.745
    # FP8 MAMF H100 SXM 1402.6 / 1979 = 70.9%
    assert round(get_accelerator("h100").extra["matmul_efficiency_fp8"], 3) == 0.709
    # "large streaming kernels 0.85-0.92" of nominal bandwidth
    assert 0.85 <= get_accelerator("h100").bandwidth_efficiency <= 0.92
    # nothing in §4 for these: left blank, never guessed
    for name in ("v100", "mi250x", "tpu-v4", "tpu-v5p", "gb300"):
        assert get_accelerator(name).matmul_efficiency is None
    assert get_accelerator("mi300x").bandwidth_efficiency is None


# ------------------------------------------------------------ names and aliases


@pytest.mark.parametrize(
    "alias, key",
    # the aliases the issue asks for, plus spelling variants (case, space, underscore)
    [("a100", "a100-80gb-sxm"), ("h100", "h100-sxm"), ("h100-sxm", "h100-sxm"), ("h200", "h200-sxm"),
     ("v100", "v100-sxm2-32gb"), ("mi300", "mi300x"), ("mi300x", "mi300x"), ("gaudi-2", "gaudi2"),
     ("tpuv5e", "tpu-v5e"), ("H100 SXM", "h100-sxm"), ("A100_80GB_PCIe", "a100-80gb-pcie"),
     ("RTX 4090", "rtx-4090"), ("TPU v5p", "tpu-v5p"), ("GB200 (per Blackwell GPU)", "gb200"),
     ("B300 SXM", "b300"), ("HGX B300", "b300"), ("GB300 NVL72", "gb300")],
)
def test_alias_resolves(alias, key):
    assert get_accelerator(alias).key == key


def test_aliases_map_to_existing_keys():
    table = catalog()
    assert aliases()["a100"] == "a100-80gb-sxm"
    assert all(key in table for key in aliases().values())


@pytest.mark.parametrize("name", ["h100-sxm4", "a10", "mi250", "nope"])
def test_unknown_name_one_line_with_close_matches(name):
    # a10 and mi250 are different parts (A10, MI250): they must not resolve to A10G / MI250X
    with pytest.raises(UnknownNameError) as info:
        get_accelerator(name)
    message = str(info.value)
    assert "\n" not in message and name in message
    if name == "h100-sxm4":
        assert "did you mean" in message and "h100-sxm" in message


# ------------------------------------------------------------ user files


def test_user_file_round_trip_json_and_yaml(tmp_path):
    h100 = get_accelerator("h100")
    for suffix in (".json", ".yaml", ".yml"):
        path = tmp_path / f"gpu{suffix}"
        dump_accelerator_file(h100, path)
        assert load_accelerator_file(path) == h100
        assert get_accelerator(str(path)) == h100


def test_hand_written_yaml(tmp_path, monkeypatch):
    # a user's own part; YAML reads 3.35e12 as a string, which must still be accepted
    (tmp_path / "mygpu.yaml").write_text(
        "name: My GPU\nmemory_bytes: 85899345920\nmemory_bandwidth_bytes_per_s: 3.35e12\n"
        "peak_flops_per_s:\n  bf16: 989.5e12\n  FP8: 1979000000000000\nmatmul_efficiency: 0.8\n"
    )
    monkeypatch.chdir(tmp_path)
    acc = get_accelerator("mygpu.yaml")  # a bare file name ending in .yaml is a path
    assert acc.memory_bandwidth_bytes_per_s == 3_350_000_000_000
    assert acc.peak("bf16") == 989_500_000_000_000 and acc.peak("fp8") == 1_979_000_000_000_000
    assert acc.matmul_efficiency == 0.8
    with pytest.raises(PerfmodelError, match="fp16"):
        acc.peak("fp16")


def test_frame_export_record_loads_back(tmp_path):
    # what `perfmodel hardware show h100 --format json` prints: orient="records"
    records = json.loads(catalog_frame([get_accelerator("a100-40gb")]).to_json(orient="records"))
    path = tmp_path / "export.json"
    path.write_text(json.dumps(records))
    acc = load_accelerator_file(path)
    assert acc.memory_bytes == 40 * GiB and acc.memory_bandwidth_bytes_per_s == 1555 * 10**9
    assert acc.peak("bf16") == 312 * T and acc.peak("int8") == 624 * T
    assert "fp8" not in acc.peak_flops_per_s
    assert acc.sm_count == 108 and isinstance(acc.sm_count, int)


def test_frame_columns_for_scripts():
    # CLI.md: hardware list/show JSON columns name, memory_bytes, memory_bandwidth_bytes_per_s,
    # peak_flops_per_s_<dtype>
    frame = catalog_frame()
    for column in ("name", "key", "memory_bytes", "memory_bandwidth_bytes_per_s", "memory_gib",
                   "ridge_point_flop_per_byte_bf16", *(f"peak_flops_per_s_{d}" for d in DTYPES)):
        assert column in frame.columns
    h100 = frame.set_index("key").loc["h100-sxm"]
    assert h100["peak_flops_per_s_bf16"] == 989.5e12
    assert h100["ridge_point_flop_per_byte_bf16"] == pytest.approx(989.5e12 / 3.35e12)
    assert frame.set_index("key")["peak_flops_per_s_bf16"].isna()["v100-sxm2-32gb"]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = {"name": "x", "memory_bytes": 2**30, "memory_bandwidth_bytes_per_s": 10**12, "peak_flops_per_s": {"bf16": 10**14}}


def test_good_minimal_dict():
    acc = accelerator_from_dict(GOOD)
    assert isinstance(acc, Accelerator) and acc.peak("bf16") == 10**14


@pytest.mark.parametrize(
    "change, field",
    [
        ({"memory_bandwidth_bytes_per_s": -5}, "memory_bandwidth_bytes_per_s"),
        ({"memory_bandwidth_bytes_per_s": 0}, "memory_bandwidth_bytes_per_s"),
        ({"memory_bytes": 0}, "memory_bytes"),
        ({"memory_bytes": "lots"}, "memory_bytes"),
        ({"memory_bytes": 1.5}, "memory_bytes"),
        ({"memory_bytes": True}, "memory_bytes"),
        ({"memory_bytes": None}, "memory_bytes"),
        ({"peak_flops_per_s": {"bf17": 1e14}}, "peak_flops_per_s.bf17"),
        ({"peak_flops_per_s": {"bf16": -1}}, "peak_flops_per_s.bf16"),
        ({"peak_flops_per_s": {}}, "peak_flops_per_s"),
        ({"peak_flops_per_s": 5}, "peak_flops_per_s"),
        ({"bandwidth": 5}, "bandwidth"),
        ({"memory_byte": 5}, "memory_byte"),
        ({"matmul_efficiency": 2}, "matmul_efficiency"),
        ({"interconnect_bytes_per_s": -1}, "interconnect_bytes_per_s"),
        ({"name": 3}, "name"),
        ({"aliases": [1]}, "aliases"),
        ({"memory_gib": 2}, "memory_gib"),
        ({"ridge_point_flop_per_byte_bf16": 7}, "ridge_point_flop_per_byte_bf16"),
        ({"peak_flops_per_s_bf16": 5e14}, "peak_flops_per_s_bf16"),
        ({"peak_flops_per_s_fp4": 5e14}, "peak_flops_per_s_fp4"),
        ({"peak_flops_per_s_fp8": "fast"}, "peak_flops_per_s_fp8"),
        ({"memory_bandwidth_bytes_per_s": float("nan")}, "memory_bandwidth_bytes_per_s"),
    ],
)
def test_bad_field_names_the_field(change, field):
    with pytest.raises(PerfmodelError) as info:
        accelerator_from_dict({**GOOD, **change}, origin="f.yaml")
    message = str(info.value)
    assert f"f.yaml: {field}:" in message and "\n" not in message


@pytest.mark.parametrize("field", ["name", "memory_bytes", "memory_bandwidth_bytes_per_s", "peak_flops_per_s"])
def test_missing_required_field(field, tmp_path):
    data = {k: v for k, v in GOOD.items() if k != field}
    path = write(tmp_path, "gpu.json", json.dumps(data))
    with pytest.raises(PerfmodelError, match=f"gpu.json: {field}: missing required field"):
        load_accelerator_file(path)


def test_malformed_json_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.json", '{\n  "name": "x",\n  "memory_bytes": 1,,\n}\n')
    with pytest.raises(PerfmodelError, match=r"bad\.json:3: malformed JSON") as info:
        load_accelerator_file(path)
    assert "\n" not in str(info.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "name: x\npeak_flops_per_s: {bf16: 1\nmemory_bytes: 5\n")
    with pytest.raises(PerfmodelError, match=r"bad\.yaml:\d+: malformed YAML") as info:
        load_accelerator_file(path)
    assert "\n" not in str(info.value)


def test_file_problems(tmp_path):
    with pytest.raises(PerfmodelError, match="not found"):
        get_accelerator(str(tmp_path / "missing.json"))
    with pytest.raises(PerfmodelError, match="json, .yaml or .yml"):
        load_accelerator_file(write(tmp_path, "gpu.txt", "{}"))
    with pytest.raises(PerfmodelError, match="empty"):
        load_accelerator_file(write(tmp_path, "empty.yaml", ""))
    with pytest.raises(PerfmodelError, match="2 records"):
        load_accelerator_file(write(tmp_path, "two.json", json.dumps([GOOD, GOOD])))
    with pytest.raises(PerfmodelError, match="mapping"):
        load_accelerator_file(write(tmp_path, "list.yaml", "- 1\n"))


def test_to_dict_is_plain_data():
    data = accelerator_to_dict(get_accelerator("gaudi3"))
    assert yaml.safe_load(yaml.safe_dump(data)) == json.loads(json.dumps(data))
    assert accelerator_from_dict(data) == get_accelerator("gaudi3")


# ------------------------------------------------------------ import weight


def test_lookup_imports_neither_pandas_nor_yaml_nor_torch():
    # DESIGN.md: `import perfmodel` never imports torch; the catalog lookup needs no pandas
    code = ("import sys; from hardware.catalog import get_accelerator; get_accelerator('h100');"
            "print(sorted(m for m in ('pandas', 'yaml', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_path_like_strings_are_files_but_csv_names_with_slashes_are_not(tmp_path, monkeypatch):
    # gpu-specs.csv names "B200 (HGX/DGX per GPU)"; "./h100" is a path, not the alias h100
    assert get_accelerator("B200 (HGX/DGX per GPU)").key == "b200"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PerfmodelError, match="must end in"):
        get_accelerator("./h100")
