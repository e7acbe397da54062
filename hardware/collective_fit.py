"""Fit the collective model's t_c, alpha_c, e_c, X_ch, p_c to the nccl-tests rows in ``data/nccl-measurements.csv``.

One group per (system, collective, algorithm), all GPU counts together, so the n-scaling of
``perfmodel.collectives.time`` is tested, not fitted; PCIe systems add the GPU count to the
group (their bandwidth depends on the server's PCIe tree, which links.csv does not hold).
NCCL's default all-reduce on NVLink SHARP systems is the faster of ring and nvls at each
size, both parameter sets fitted at once. Least squares on ln(time), Levenberg-Marquardt
on parameters kept inside ``BOUNDS``. Errors: |predicted/measured - 1| per system and
message band, in sample and leave-one-source-out (a source is one system's measurement
files; the other NVSwitch systems' parameters predict it with its own link bandwidth).

Run ``python -m perfmodel.hardware.collective_fit`` to rewrite ``data/collectives-fit.json``.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import itertools
import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
from sympy import lambdify

from perfmodel.hardware.links import interconnect
from perfmodel import collectives as C
from perfmodel import symbols as S
from perfmodel.hardware.attention_fit import levenberg_marquardt
from perfmodel.errors import PerfmodelError

MEASUREMENTS = "nccl-measurements.csv"
FIT_FILE = "collectives-fit.json"
PARAMETERS = ("t_c", "alpha_c", "e_c", "X_ch", "p_c")
METHOD = ("least squares on ln(time), Levenberg-Marquardt (hardware.attention_fit.levenberg_marquardt) on "
          "bounded parameters (log-space sigmoid within BOUNDS), best of 3 starts per algorithm; time from "
          "the row's measured latency in notes; NCCL's default all-reduce on NVLink SHARP systems is fitted "
          "as the faster of ring and nvls at each size (both parameter sets at once)")
#: nccl-measurements.csv system (text before " (") -> catalog key; RTX PRO 6000 has no catalog row
SYSTEMS = {"DGX/HGX A100-SXM4-80GB": "a100-80gb-sxm", "HGX H100 80GB HBM3": "h100-sxm", "HGX H200": "h200-sxm",
           "HGX B200": "b200", "GB200 NVL72": "gb200", "L40S server": "l40s"}
#: nccl-tests collective -> (collective, algorithm) of perfmodel.collectives; all_reduce is NCCL's own choice
COLLECTIVE_NAMES = {"all_gather": ("all_gather", "ring"), "reduce_scatter": ("reduce_scatter", "ring"),
                    "alltoall": ("all_to_all", "pairwise"), "all_reduce": ("all_reduce", None),
                    "all_reduce_trtllm_custom": ("all_reduce", "custom")}
BANDS = (("<1MiB", 0, 2**20), ("1-64MiB", 2**20, 64 * 2**20), (">64MiB", 64 * 2**20, float("inf")))
_STARTS = ((5e-6, 1e-6, 0.8, 1e6, 0.6), (10e-6, 0.3e-6, 0.6, 4e6, 1.0), (3e-6, 2e-6, 0.95, 2.5e5, 0.5))
#: (low, high) of each fitted parameter: keeps the plateau e_c from trading against a huge X_ch
BOUNDS = {"t_c": (1e-9, 1e-3), "alpha_c": (1e-12, 1e-4), "e_c": (0.01, 1.0), "X_ch": (1.0, 2.0**30),
          "p_c": (0.3, 1.5)}
_LATENCY = re.compile(r"latency=([0-9.eE+-]+) ms")
_FILE = re.compile(r"file (\S+ @ \w+)")


@dataclass(frozen=True)
class Row:
    source: str
    system: str
    collective: str
    algorithm: str
    gpus: int
    message_bytes: float
    time_s: float
    bandwidth_bytes_per_s: float
    group: str
    file: str


def default_algorithm(system: str) -> str:
    """NCCL's default all-reduce: "auto" (the faster of ring and NVLink SHARP) where the switch has
    SHARP, else ring."""
    return "auto" if interconnect(system).nvls else "ring"


def candidates(row: Row) -> tuple[str, ...]:
    """The algorithms a row's time is the fastest of: ring and nvls for "auto", else the row's own."""
    return ("ring", "nvls") if row.algorithm == "auto" else (row.algorithm,)


def _group(system: str, collective: str, alg: str, gpus: int) -> str:
    per_n = interconnect(system).scale_up.kind == "pcie"
    return f"{system}/{collective}/{alg}" + (f"/n={gpus}" if per_n else "")


def load_rows(text: str | None = None) -> list[Row]:
    """The timed sweep rows of systems in the catalog (issue-thread spot values are kept apart)."""
    text = text or (resources.files("perfmodel.hardware") / "data" / MEASUREMENTS).read_text(encoding="utf-8")
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        system = SYSTEMS.get(r["system"].split(" (")[0])
        latency = _LATENCY.search(r["notes"])
        if system is None or latency is None or r["collective"] not in COLLECTIVE_NAMES:
            continue
        collective, alg = COLLECTIVE_NAMES[r["collective"]]
        alg = alg or default_algorithm(system)
        gpus = int(r["gpus"])
        rows.append(Row(r["source"], system, collective, alg, gpus, float(r["message_bytes"]),
                        float(latency.group(1)) * 1e-3, interconnect(system).scale_up.bandwidth_bytes_per_s,
                        _group(system, collective, alg, gpus), _FILE.search(r["notes"]).group(1)))
    return rows


_SYMBOLS = (S.t_c, S.alpha_c, S.e_c, S.X_ch, S.p_c, S.n_c, S.X_c, S.BW_u)


@functools.cache
def predictor(collective: str, alg: str):
    """numpy function (t_c, alpha_c, e_c, X_ch, p_c, n, X, BW) -> seconds, lambdified from collectives.time."""
    return lambdify(_SYMBOLS, C.time(collective, alg), "numpy")


def predict(rows: list[Row], params: dict[str, dict[str, float]]) -> np.ndarray:
    """Seconds for rows of one group: the fastest of the group's algorithms (NCCL's tuner picks it)."""
    columns = [np.array([getattr(r, a) for r in rows], float) for a in ("gpus", "message_bytes",
                                                                        "bandwidth_bytes_per_s")]
    return np.min([predictor(rows[0].collective, alg)(*(theta[p] for p in PARAMETERS), *columns)
                   for alg, theta in params.items()], axis=0)


def _theta(u, free, algs):
    """Parameters from the unbounded vector u: each inside BOUNDS (log-space sigmoid); unfitted ones 0."""
    out, i = {}, 0
    for alg in algs:
        theta = {}
        for p in PARAMETERS:
            if p in free:
                lo, hi = np.log(BOUNDS[p])
                theta[p] = np.float64(np.exp(lo + (hi - lo) / (1 + np.exp(-np.clip(u[i], -40, 40)))))
                i += 1
            else:
                theta[p] = np.float64(0.0)
        out[alg] = theta
    return out


def _unbounded(value: float, p: str) -> float:
    lo, hi = np.log(BOUNDS[p])
    s = (np.log(value) - lo) / (hi - lo)
    return float(np.log(s / (1 - s)))


def fit_group(rows: list[Row]) -> dict:
    """Fitted parameters of one group, per algorithm; alpha_c is 0 where one GPU count leaves it
    unidentifiable (folded into t_c)."""
    free = PARAMETERS if len({r.gpus for r in rows}) > 1 else ("t_c", "e_c", "X_ch", "p_c")
    algs = candidates(rows[0])
    target = np.log([r.time_s for r in rows])
    best = None
    for starts in itertools.product(_STARTS, repeat=len(algs)):
        u0 = [_unbounded(dict(zip(PARAMETERS, s))[p], p) for s in starts for p in free]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            u, cost = levenberg_marquardt(lambda u: np.log(predict(rows, _theta(u, free, algs))) - target, u0)
        if best is None or cost < best[1]:
            best = (u, cost)
    params = {a: {p: float(v) for p, v in th.items()} for a, th in _theta(best[0], free, algs).items()}
    return {"parameters": params, "fitted": list(free), "rows": len(rows),
            "gpus": sorted({r.gpus for r in rows}), "rms_log_error": float(np.sqrt(best[1] / len(rows)))}


def fit(rows: list[Row]) -> dict[str, dict]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    return {g: fit_group(rs) for g, rs in sorted(groups.items())}


def transferred(groups: dict[str, dict], held_out: Row, same_generation: bool = False) -> dict | None:
    """Per algorithm, the geometric median of the same collective's fitted parameters on the other
    NVSwitch systems (only those of the same NVLink generation if asked); None without a donor."""
    mine = interconnect(held_out.system).scale_up
    if mine.switch != "nvswitch":
        return None

    def donor(system: str) -> bool:
        link = interconnect(system).scale_up
        return (system != held_out.system and link.switch == "nvswitch"
                and (not same_generation or link.generation == mine.generation))

    out = {}
    for alg in candidates(held_out):
        donors = [g["parameters"][alg] for key, g in groups.items()
                  if key.split("/")[1] == held_out.collective and alg in g["parameters"] and donor(key.split("/")[0])]
        if not donors:
            return None
        out[alg] = {p: float(np.exp(np.median(np.log([max(d[p], 1e-300) for d in donors]))))
                    if all(d[p] > 0 for d in donors) else 0.0 for p in PARAMETERS}
    return out


def errors(rows: list[Row], predicted: np.ndarray) -> dict[str, dict]:
    """Median and p90 of |predicted/measured - 1| per system and message band, and over all bands."""
    rel = np.abs(predicted / np.array([r.time_s for r in rows]) - 1)
    out: dict[str, dict] = {}
    for system in sorted({r.system for r in rows}):
        mine = np.array([r.system == system for r in rows])
        cells = {}
        for band, lo, hi in (*BANDS, ("all", 0, float("inf"))):
            sel = mine & np.array([lo <= r.message_bytes < hi for r in rows])
            if sel.any():
                cells[band] = {"median": float(np.median(rel[sel])), "p90": float(np.percentile(rel[sel], 90)),
                               "rows": int(sel.sum())}
        out[system] = cells
    return out


def _predict_all(rows: list[Row], params_for) -> tuple[list[Row], np.ndarray]:
    kept, out = [], []
    by_group: dict[str, list[Row]] = {}
    for r in rows:
        by_group.setdefault(r.group, []).append(r)
    for key, rs in by_group.items():
        params = params_for(key, rs[0])
        if params is not None:
            kept += rs
            out.append(predict(rs, params))
    return kept, np.concatenate(out) if out else np.array([])


#: the issue's complaint: a ring at link rate (no latency, full bandwidth) against 8x H100 all-reduce
PLAIN_RING = {"t_c": 0.0, "alpha_c": 0.0, "e_c": 1.0, "X_ch": 0.0, "p_c": 1.0}


def plain_ring_check(rows: list[Row], groups: dict[str, dict], system: str = "h100-sxm", gpus: int = 8) -> list[dict]:
    """Measured, fitted and plain-ring-at-link-rate times of one system's all-reduce, 64 KiB to 256 MiB."""
    rs = [r for r in rows if r.system == system and r.gpus == gpus and r.collective == "all_reduce"
          and r.algorithm != "custom" and r.message_bytes in (2**16, 2**20, 2**24, 2**28)]
    fitted = predict(rs, groups[rs[0].group]["parameters"])
    plain = predict([replace(r, algorithm="ring") for r in rs], {"ring": PLAIN_RING})
    return [{"message_bytes": r.message_bytes, "measured_s": r.time_s, "fitted_s": float(f), "plain_ring_s": float(p),
             "measured_over_plain": r.time_s / float(p), "fitted_over_measured": float(f) / r.time_s}
            for r, f, p in zip(rs, fitted, plain)]


def report(rows: list[Row]) -> dict:
    """Fit, in-sample and leave-one-source-out errors, and the plain-ring comparison, as a JSON-able dict."""
    groups = fit(rows)
    in_rows, in_pred = _predict_all(rows, lambda key, r: groups[key]["parameters"])
    lo_rows, lo_pred = _predict_all(rows, lambda key, r: transferred(groups, r))
    gen_rows, gen_pred = _predict_all(rows, lambda key, r: transferred(groups, r, same_generation=True))
    for key, g in groups.items():
        rs = [r for r in rows if r.group == key]
        rel = np.abs(predict(rs, g["parameters"]) / np.array([r.time_s for r in rs]) - 1)
        g.update(median_abs_error=float(np.median(rel)), p90_abs_error=float(np.percentile(rel, 90)))
    return {
        "formula": {f"{c}/{a}": str(C.time(c, a)) for c, a in C.ALGORITHMS},
        "efficiency": str(C.efficiency()),
        "method": METHOD,
        "data": f"hardware/data/{MEASUREMENTS} (timed sweep rows of catalog systems: {len(rows)})",
        "sources": {s: sorted({f"{r.source}: {r.file}" for r in rows if r.system == s})
                    for s in sorted({r.system for r in rows})},
        "date": datetime.date.today().isoformat(),
        "all_reduce_default": {s: default_algorithm(s) for s in sorted({r.system for r in rows})},
        "groups": groups,
        "plain_ring_check_8x_h100_all_reduce": plain_ring_check(rows, groups),
        "errors": {"in_sample": errors(in_rows, in_pred),
                   "leave_one_source_out": errors(lo_rows, lo_pred),
                   "leave_one_source_out_same_generation": errors(gen_rows, gen_pred)},
        "loso_rule": "a source is one system's measurement files; a held-out system's groups use the "
                     "geometric median of the same collective/algorithm's parameters on the other NVSwitch "
                     "systems (same_generation: only those of its NVLink generation) with its own BW_u; PCIe "
                     "systems and A100 (same generation) have no donor and are left out",
    }


def save(path: Path | None = None) -> dict:
    result = report(load_rows())
    path = path or Path(__file__).parent / "data" / FIT_FILE
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return result


def load_fit() -> dict:
    """The stored fit (``data/collectives-fit.json``)."""
    return json.loads((resources.files("perfmodel.hardware") / "data" / FIT_FILE).read_text(encoding="utf-8"))


#: algorithms no nccl row measures alone borrow a measured one's parameters: the tree all-reduce the
#: ring's, send/recv a ring all-gather's (at 2 GPUs an all-gather is one send/recv each way)
BORROWED = {("all_reduce", "tree"): ("all_reduce", "ring"), ("send_recv", "direct"): ("all_gather", "ring")}


def fitted_parameters(system: str, collective: str, algorithm: str, gpus: int, fit: dict | None = None) -> dict:
    """Stored parameters {algorithm: {t_c, alpha_c, e_c, X_ch, p_c}} for one collective on one catalog
    system ("auto" all-reduce: ring and nvls); PCIe systems by GPU count."""
    fit = fit or load_fit()
    key = interconnect(system).key
    if algorithm == "auto" and not interconnect(key).nvls:
        algorithm = "ring"
    coll, alg = BORROWED.get((collective, algorithm), (collective, algorithm))
    wanted = ("ring", "nvls") if alg == "auto" else (alg,)
    for name, group in fit["groups"].items():
        parts = name.split("/")
        if parts[0] == key and parts[1] == coll and set(wanted) <= set(group["parameters"]) \
                and (len(parts) < 4 or parts[3] == f"n={gpus}"):
            return {(algorithm if a == alg else a): group["parameters"][a] for a in wanted}
    raise PerfmodelError(f"collective fit: no fitted {collective}/{algorithm} for {key} on {gpus} GPUs")


def time_s(system: str, collective: str, algorithm: str, gpus: int, message_bytes: float) -> float:
    """Seconds for one collective on one catalog system, from the stored fit ("auto": the faster of
    ring and nvls): perfmodel.collectives.time evaluated at the fitted parameters."""
    link = interconnect(system).scale_up.bandwidth_bytes_per_s
    return min(float(predictor(collective, alg)(*(theta[p] for p in PARAMETERS), gpus, message_bytes, link))
               for alg, theta in fitted_parameters(system, collective, algorithm, gpus).items())


if __name__ == "__main__":
    res = save()
    for kind, table in res["errors"].items():
        print(kind)
        for system, cells in table.items():
            print(f"  {system:14s}", "  ".join(f"{b}: {c['median']:.1%}/{c['p90']:.1%} ({c['rows']})"
                                               for b, c in cells.items()))
