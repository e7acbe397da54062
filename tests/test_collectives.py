"""Collective volumes against hand derivations and a simulated ring, interconnect data against
its sources, and the fitted collective model against the stored nccl-tests rows."""

from __future__ import annotations

import csv
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from sympy import Rational, Symbol, limit, oo, simplify

from perfmodel.hardware import collective_fit as F
from perfmodel.hardware.catalog import catalog
from perfmodel.hardware.links import interconnect, interconnects
from perfmodel import collectives as C
from perfmodel import symbols as S
from perfmodel.errors import PerfmodelError

V = Symbol("V", positive=True)


def _ring_all_reduce(n: int, chunk: int) -> tuple[list[list[int]], list[int]]:
    """Simulate the ring all-reduce of Patarasuk & Yuan (2009): n ranks, n chunks of ``chunk``
    elements each; returns every rank's final chunks and the elements each rank sent."""
    data = [[[r * 100 + c] * chunk for c in range(n)] for r in range(n)]
    sent = [0] * n
    for step in range(n - 1):  # reduce-scatter: rank r sends chunk (r - step) to r + 1
        moves = [(r, (r - step) % n) for r in range(n)]
        for r, c in moves:
            dst = (r + 1) % n
            data[dst][c] = [a + b for a, b in zip(data[dst][c], data[r][c])]
            sent[r] += chunk
    for step in range(n - 1):  # all-gather: rank r forwards the reduced chunk (r + 1 - step)
        moves = [(r, (r + 1 - step) % n) for r in range(n)]
        for r, c in moves:
            data[(r + 1) % n][c] = list(data[r][c])
            sent[r] += chunk
    return [[row[0] for row in rank] for rank in data], sent


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_ring_all_reduce_volume_matches_a_simulated_ring(n):
    # Source: Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms" (2009): each rank sends
    # 2(n-1) pieces of V/n. The simulation checks the sums and counts the elements sent.
    chunk = 6
    final, sent = _ring_all_reduce(n, chunk)
    expected = [sum(r * 100 + c for r in range(n)) for c in range(n)]
    assert all(rank == expected for rank in final)
    buffer_elements = n * chunk
    assert set(sent) == {2 * (n - 1) * chunk}
    bus = C.algorithm("all_reduce", "ring").bus_bytes.subs({S.n_c: n, S.X_c: buffer_elements})
    assert bus == sent[0] == Fraction(2 * (n - 1), n) * buffer_elements


def test_hand_derived_volumes_per_gpu():
    # Hand derivations (nccl-tests doc/PERFORMANCE.md, "Bus bandwidth"): all-gather and
    # reduce-scatter move (n-1)/n of the gathered buffer per GPU, all-to-all sends V/n to each of
    # n-1 peers, send/recv the whole message; NVLS: ld_reduce pulls V/n from each of n GPUs for
    # every shard (V out per GPU) plus the multicast store of its own shard (V/n).
    vol = {k: a.bus_bytes.subs({S.n_c: 8, S.X_c: V}) for k, a in C.ALGORITHMS.items()}
    assert vol[("all_reduce", "ring")] == Rational(7, 4) * V
    assert vol[("all_gather", "ring")] == vol[("reduce_scatter", "ring")] == Rational(7, 8) * V
    assert vol[("all_to_all", "pairwise")] == Rational(7, 8) * V
    assert vol[("send_recv", "direct")] == V
    assert vol[("all_reduce", "nvls")] == V + V / 8
    assert C.algorithm("all_reduce", "ring").steps.subs(S.n_c, 8) == 14


def test_bus_factor_is_the_one_the_nccl_rows_use():
    # Source: nccl-measurements.csv's busbw/algbw (derived by its collector with the nccl-tests
    # PERFORMANCE.md factors), not this module.
    rows = csv.DictReader(open(F.Path(F.__file__).parent / "data" / F.MEASUREMENTS))
    checked = 0
    for r in rows:
        name = {"all_gather": "all_gather", "reduce_scatter": "reduce_scatter", "alltoall": "all_to_all",
                "all_reduce": "all_reduce"}.get(r["collective"])
        if name and r["source"].startswith("ai-dynamo") and float(r["algbw_gbps"]) > 10:
            factor = float(C.bus_factor(name).subs(S.n_c, int(r["gpus"])))
            assert float(r["busbw_gbps"]) == pytest.approx(float(r["algbw_gbps"]) * factor, rel=2e-3)
            checked += 1
    assert checked > 500


def test_time_reduces_to_the_plain_ring_and_ramps_to_half_at_x_half():
    t = C.time("all_reduce", "ring")
    plain = t.subs({S.t_c: 0, S.alpha_c: 0, S.e_c: 1, S.p_c: 1}).subs(S.X_ch, 0)
    assert simplify(plain - 2 * (S.n_c - 1) / S.n_c * S.X_c / S.BW_u) == 0
    assert simplify(C.efficiency().subs(S.X_c, S.X_ch) - S.e_c / 2) == 0
    assert limit(C.efficiency().subs({S.p_c: Rational(1, 2)}), S.X_c, oo) == S.e_c


def test_hierarchical_all_reduce_crosses_the_nic_with_each_rails_share():
    # Hand derivation: a node's NICs carry the inter-node ring all-reduce of the whole buffer,
    # 2(n_n-1)/n_n * V, split over its n_g rails.
    t = C.hierarchical_time("all_reduce")
    nic_only = t.subs({S.t_c: 0, S.alpha_c: 0, S.t_o: 0, S.alpha_o: 0, S.e_o: 1, S.p_o: 1}).subs(S.X_oh, 0)
    nic_only = limit(nic_only, S.BW_u, oo)
    assert simplify(nic_only * S.BW_o - 2 * (S.n_n - 1) / S.n_n * S.X_c / S.n_g) == 0


def test_unknown_algorithm_is_one_line():
    with pytest.raises(PerfmodelError, match=r"^collective: no algorithm all_gather/nvls \(known: "):
        C.algorithm("all_gather", "nvls")


# ------------------------------------------------------------------ interconnect data


def test_every_catalog_part_has_a_link_row_with_a_source():
    assert set(interconnects()) == set(catalog())
    for link in interconnects().values():
        if link.scale_up.bandwidth_bytes_per_s is not None:
            assert link.scale_up.source
        if link.scale_out is not None:
            assert link.scale_out.source and link.scale_out.bandwidth_bytes_per_s


def test_scale_up_is_half_the_bidirectional_figure_of_gpu_specs():
    # Independent source: gpu-specs.csv nvlink_gbps_bidir (datasheets' bidirectional totals).
    for acc in catalog().values():
        link = interconnect(acc.key).scale_up
        if link.kind in ("nvlink", "infinity-fabric", "roce") and acc.interconnect_bytes_per_s:
            assert link.bandwidth_bytes_per_s * 2 == acc.interconnect_bytes_per_s, acc.key


def test_reference_system_figures():
    # DGX BasePOD RA "Core Components": DGX H100 eight 400 Gb/s ConnectX-7; DGX A100 eight 200 Gb/s
    # HDR (SuperPOD RA-09950-001); GB200 NVL72: 72 GPUs in one NVLink domain at 1.8 TB/s each.
    h100 = interconnect("h100")
    assert h100.scale_up.bandwidth_bytes_per_s == 450 * 10**9 and h100.scale_up.domain_gpus == 8 and h100.nvls
    assert h100.scale_out.bandwidth_bytes_per_s == 400 * 10**9 // 8
    assert interconnect("a100").scale_out.bandwidth_bytes_per_s == 200 * 10**9 // 8
    gb = interconnect("gb200")
    assert gb.scale_up.domain_gpus == 72 and gb.scale_up.bandwidth_bytes_per_s * 2 == 1800 * 10**9
    assert interconnect("l40s").scale_up.kind == "pcie" and interconnect("l40s").scale_up.bandwidth_bytes_per_s == 32e9


def test_blackwell_ultra_fabrics():
    # HGX B300: 8 GPUs on NVLink 5 switches, 1.8 TB/s bidirectional each (14.4 TB/s total), one
    # ConnectX-8 SuperNIC at 800 Gb/s per GPU; GB300 NVL72: 72 GPUs in one NVLink domain (130 TB/s),
    # 72 ConnectX-8 at 800 Gb/s (NVIDIA spec tables as cited in links.csv)
    b300, gb300 = interconnect("hgx-b300"), interconnect("gb300-nvl72")
    for ic in (b300, gb300):
        assert ic.scale_up.kind == "nvlink" and ic.scale_up.switch == "nvswitch" and ic.nvls
        assert ic.scale_up.bandwidth_bytes_per_s * 2 == 1800 * 10**9
        assert ic.scale_out.bandwidth_bytes_per_s == 800 * 10**9 // 8
    assert b300.scale_up.domain_gpus == 8 and b300.scale_up.bandwidth_bytes_per_s * 8 * 2 == 14_400 * 10**9
    assert gb300.scale_up.domain_gpus == 72
    assert catalog()["b300"].fabric.domain_gpus == 8 and catalog()["gb300"].fabric.domain_gpus == 72


# ------------------------------------------------------------------ the fit against the stored rows

ROWS = F.load_rows()
FIT = F.load_fit()
#: In sample the worst system median |error| is 7.4% (h200-sxm) and the worst p90 22.9% (l40s,
#: h100-sxm); 10% / 30% leave a third of headroom for a refit and still fail if a change doubles
#: the error of a system.
MEDIAN_MAX, P90_MAX = 0.10, 0.30


def _relative_errors(system: str) -> np.ndarray:
    rows = [r for r in ROWS if r.system == system]
    groups = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    return np.concatenate([np.abs(F.predict(rs, FIT["groups"][g]["parameters"]) / np.array([r.time_s for r in rs]) - 1)
                           for g, rs in groups.items()])


@pytest.mark.parametrize("system", ["a100-80gb-sxm", "h100-sxm", "h200-sxm", "b200", "gb200", "l40s"])
def test_fitted_model_against_the_nccl_rows(system):
    # Source: nccl-measurements.csv (aiconfigurator's nccl-tests perf DB), the rows the fit used.
    rel = _relative_errors(system)
    assert len(rel) >= 168
    assert np.median(rel) <= MEDIAN_MAX and np.percentile(rel, 90) <= P90_MAX
    stored = FIT["errors"]["in_sample"][system]["all"]
    assert stored["median"] == pytest.approx(np.median(rel)) and stored["rows"] == len(rel)


def test_plain_ring_is_six_times_too_fast_at_1_mib_and_the_fit_is_not():
    # The issue's claim, on the measured rows: 8x H100 all-reduce of 1 MiB takes 25.40 us; a ring at
    # the 450 GB/s link rate says 4.1 us.
    check = {c["message_bytes"]: c for c in FIT["plain_ring_check_8x_h100_all_reduce"]}[2**20]
    assert check["measured_s"] == pytest.approx(25.4e-6, rel=1e-3)
    assert 5 <= check["measured_over_plain"] <= 7
    assert 0.85 <= check["fitted_over_measured"] <= 1.15


def test_issue_thread_figures_out_of_sample():
    # Sources not in the fit: nccl-tests #212 (maintainer: 8x H100 NVLS all-reduce peaks at busbw
    # ~480 GB/s, algbw ~275, on sizes above 256 MB) and NVIDIA/nccl #1455 (8x H100, NCCL_ALGO=RING,
    # 2-4 GB: busbw 365-370 GB/s for 2 to 8 GPUs). Tolerance 10%: the fit's >64 MiB band median.
    row = next(r for r in ROWS if r.system == "h100-sxm" and r.collective == "all_reduce" and r.algorithm == "auto")
    params = FIT["groups"]["h100-sxm/all_reduce/auto"]["parameters"]
    big = replace(row, gpus=8, message_bytes=4.0 * 2**30)
    busbw = big.message_bytes / F.predict([big], params)[0] * 2 * 7 / 8
    assert busbw == pytest.approx(480e9, rel=0.10)
    for n in (2, 4, 8):
        ring = replace(row, gpus=n, message_bytes=2.0**31, algorithm="ring")
        busbw = ring.message_bytes / F.predict([ring], {"ring": params["ring"]})[0] * 2 * (n - 1) / n
        assert busbw == pytest.approx(367e9, rel=0.10)


def test_refit_reproduces_the_stored_parameters():
    rows = [r for r in ROWS if r.group == "h100-sxm/reduce_scatter/ring"]
    fresh = F.fit_group(rows)["parameters"]["ring"]
    stored = FIT["groups"]["h100-sxm/reduce_scatter/ring"]["parameters"]["ring"]
    assert fresh == pytest.approx(stored, rel=1e-3)


def test_stored_fit_has_its_provenance():
    assert {"formula", "method", "date", "data", "errors", "loso_rule"} <= set(FIT)
    assert set(FIT["errors"]["leave_one_source_out"]) == {"a100-80gb-sxm", "h100-sxm", "h200-sxm", "b200", "gb200"}
    assert set(FIT["errors"]["leave_one_source_out_same_generation"]) == {"h100-sxm", "h200-sxm", "b200", "gb200"}


def test_h200_rows_from_the_h100_fit():
    # Out of sample: H200 and H100 share the NVLink 4 / NVSwitch baseboard (links.csv), so the
    # H100's fitted parameters with the H200's link predict the H200's own nccl rows. Stored LOSO
    # (same generation) gives 9.0% median / 23% p90; 12% / 30% is the threshold.
    groups = FIT["groups"]
    rel = []
    for r in (r for r in ROWS if r.system == "h200-sxm"):
        params = F.transferred(groups, r, same_generation=True)
        rel.append(abs(F.predict([r], params)[0] / r.time_s - 1))
    assert len(rel) == 321
    assert np.median(rel) <= 0.12 and np.percentile(rel, 90) <= 0.30


def test_time_lookup_for_the_operator_table():
    # 8x H100 all-reduce of 1 MiB measured 25.40 us (nccl row); the lookup evaluates the same fit.
    assert F.time_s("h100", "all_reduce", "auto", 8, 2**20) == pytest.approx(25.4e-6, rel=0.15)
    # tree and send/recv are never measured alone: they borrow ring all-reduce's / all-gather's fit
    assert F.fitted_parameters("h100", "all_reduce", "tree", 8) == {
        "tree": FIT["groups"]["h100-sxm/all_reduce/auto"]["parameters"]["ring"]}
    assert F.time_s("a100", "send_recv", "direct", 2, 2**20) > F.time_s("a100", "all_gather", "ring", 2, 2**20)
    with pytest.raises(PerfmodelError, match=r"^collective fit: no fitted all_reduce/ring for l4 on 2 GPUs$"):
        F.time_s("l4", "all_reduce", "ring", 2, 1e6)


# ------------------------------------------------------------------ L40S: the switch fabric and the measured server

def _l40s_busbw(fabric, gpus: int, message_bytes: int) -> float:
    """nccl-tests bus bandwidth (doc/PERFORMANCE.md: 2(n-1)/n * bytes / time) of an all-reduce."""
    return 2 * (gpus - 1) / gpus * message_bytes / fabric.seconds("all_reduce", gpus, 1, message_bytes)


def test_l40s_switch_fabric_keeps_the_pair_bus_bandwidth_at_every_count():
    # Independent sources: nccl-measurements.csv, L40S 2-GPU all-reduce of 256 MiB: 13.373 ms,
    # busbw 20.073 GB/s; the L40S datasheet's PCIe Gen4 x16 = 32 GB/s per direction. On a
    # non-blocking switch each GPU keeps its own link, so 4 and 8 GPUs see the pair's figure
    # (a ring's bus bandwidth is defined to be independent of n), never above the link.
    from perfmodel.hardware.links import fabric_for

    switch = fabric_for("l40s")
    for gpus in (2, 4, 8):
        busbw = _l40s_busbw(switch, gpus, 2**28)
        assert busbw == pytest.approx(20.073e9, rel=0.10), gpus
        assert busbw < 32e9
    assert "every GPU count" in switch.sources["intra_node"]


def test_l40s_measured_server_fabric_is_its_own_rows():
    # Independent source: nccl-measurements.csv, the aiconfigurator L40S server, 256 MiB
    # all-reduce: 4 GPUs 5.139 GB/s, 8 GPUs 1.450 GB/s bus bandwidth (its tree, not the link).
    from perfmodel.hardware.links import fabric_for

    measured = fabric_for("l40s", "measured")
    assert _l40s_busbw(measured, 4, 2**28) == pytest.approx(5.139e9, rel=0.15)
    assert _l40s_busbw(measured, 8, 2**28) == pytest.approx(1.450e9, rel=0.25)
    with pytest.raises(PerfmodelError, match="pcie_tree"):
        fabric_for("l40s", "bus")
