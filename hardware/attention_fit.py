"""Fitting the attention efficiency model (:mod:`perfmodel.efficiency`) to measured
calls, and the stored fit ``data/efficiency-fit.json``: fitting lives with the
measurements; perfmodel only evaluates the parameters it is handed."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import replace
from importlib import resources

import numpy as np

from perfmodel.efficiency import PARAMETERS, Features, Fit, KernelEfficiency, _Batch, _times
from perfmodel.errors import PerfmodelError
from perfmodel.files import parse_json, write_text

FIT_METHOD = ("least squares on ln(time), Levenberg-Marquardt (numpy, central-difference Jacobian, "
              "best of 4 starts); bounded by transforms: e_max, f_causal, e_mem = sigmoid(u) in (0, 1); "
              "k_half, t_launch = exp(u) > 0. Fitted: e_max from compute-bound rows, k_half if their "
              "keys per query vary, f_causal if both masks occur; e_mem (and t_launch if sizes vary) "
              "only in groups without compute-bound rows. Unfitted parameters keep their defaults: "
              "the catalog's matmul_efficiency and bandwidth_efficiency, k_half = t_launch = 0, f_causal = 1")
FIT_FILE = "efficiency-fit.json"
_FRACTIONS = ("e_max", "f_causal", "e_mem")




def identifiable(feats: list[Features]) -> tuple[str, ...]:
    """The parameters these rows determine (pure-roofline bound). Compute-bound rows set
    ``e_max``, and ``k_half`` / ``f_causal`` when keys per query / masks vary. A group
    with no compute-bound row (decode, naive kernels) sets ``e_mem``, and ``t_launch``
    when the sizes vary. Short prefill rows that the pure roofline calls memory-bound
    are left to the compute ramp, so ``e_mem`` stays a bandwidth fraction."""
    compute = [f for f in feats if f.bound == "compute"]
    free = []
    if compute:
        free.append("e_max")
        if len({f.keys for f in compute}) > 1:
            free.append("k_half")
        if len({f.causal for f in compute}) > 1:
            free.append("f_causal")
    else:
        free.append("e_mem")
        if len({round(sum(f.memory_s), 15) for f in feats}) > 1:
            free.append("t_launch")
    return tuple(free[: len(feats)])


def _to_theta(u, free, base):
    theta = base.copy()
    u = np.clip(u, -60.0, 60.0)
    for i, name in enumerate(free):
        j = PARAMETERS.index(name)
        theta[j] = 1 / (1 + np.exp(-u[i])) if name in _FRACTIONS else np.exp(u[i])
    return theta


def _from_theta(theta, free):
    u = []
    for name in free:
        x = float(theta[PARAMETERS.index(name)])
        u.append(np.log(x / (1 - x)) if name in _FRACTIONS else np.log(x))
    return np.array(u)


#: starting values of the search (a fit starts from each; the lowest cost wins)
_STARTS = ({"e_max": 0.5, "k_half": 256.0, "f_causal": 0.8, "e_mem": 0.5, "t_launch": 5e-6},
           {"e_max": 0.8, "k_half": 32.0, "f_causal": 0.95, "e_mem": 0.85, "t_launch": 1e-4},
           {"e_max": 0.3, "k_half": 1024.0, "f_causal": 0.6, "e_mem": 0.2, "t_launch": 1e-6},
           {"e_max": 0.9, "k_half": 128.0, "f_causal": 0.9, "e_mem": 0.3, "t_launch": 2e-5})


def levenberg_marquardt(residual, u0, *, iterations: int = 200, tol: float = 1e-12):
    """Minimise ``Σ residual(u)²`` from ``u0``: damped Gauss-Newton steps with a
    central-difference Jacobian; returns ``(u, cost)``."""
    u, lam = np.array(u0, float), 1e-3
    r = residual(u)
    cost = r @ r
    for _ in range(iterations):
        h = 1e-6 * np.maximum(1.0, np.abs(u))
        jac = np.stack([(residual(u + hi) - residual(u - hi)) / (2 * hi[i]) for i, hi in enumerate(np.diag(h))], axis=1)
        g, a = jac.T @ r, jac.T @ jac
        while lam < 1e12:
            step = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), -g)
            trial = residual(u + step)
            if trial @ trial < cost:
                break
            lam *= 4
        else:
            return u, cost  # no step lowers the cost: a minimum
        previous, cost = cost, trial @ trial
        u, r, lam = u + step, trial, max(lam / 3, 1e-12)
        if previous - cost < tol * previous:
            break
    return u, cost


def fit_group(group: str, feats: list[Features], measured_s, acc, sources: Iterable[str] = ()) -> KernelEfficiency:
    """Fit one group's identifiable parameters to measured seconds (least squares on ln t)."""
    measured = np.asarray(measured_s, float)
    if len(feats) != len(measured) or not len(feats) or not np.all(measured > 0):
        raise PerfmodelError(f"efficiency fit {group}: need as many positive times as calls")
    start = KernelEfficiency.defaults(group, acc)
    free = identifiable(feats)
    batch = _Batch.of(feats)
    target = np.log(measured)
    if not free:
        return replace(start, rows=len(feats), sources=tuple(sorted(set(sources))))

    best = None
    for init in _STARTS:
        base = replace(start, **{k: init[k] for k in free}).vector()
        u, cost = levenberg_marquardt(lambda u: np.log(_times(_to_theta(u, free, base), batch)) - target, _from_theta(base, free))
        if best is None or cost < best[1]:
            best = (_to_theta(u, free, base), cost)
    theta, cost = best
    values = {p: float(theta[i]) for i, p in enumerate(PARAMETERS)}
    return KernelEfficiency(group, **values, fitted=free, rows=len(feats), sources=tuple(sorted(set(sources))),
                            rms_log_error=float(np.sqrt(cost / len(feats))))


def save(fit: Fit, path) -> None:
    """Write ``fit`` as JSON with the fitting method beside its formula."""
    write_text(path, json.dumps({**fit.to_dict(), "fit_method": FIT_METHOD}, indent=2, allow_nan=False) + "\n")  # atomic


def load_fit(path=None) -> Fit:
    """The stored fit (default: ``hardware/data/efficiency-fit.json``) or one at ``path``."""
    try:
        if path is None:
            text = (resources.files("perfmodel.hardware") / "data" / FIT_FILE).read_text(encoding="utf-8")
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise PerfmodelError(f"cannot read efficiency fit {path or FIT_FILE}: {exc.strerror or exc}") from None
    data = parse_json(text, f"efficiency fit {path or FIT_FILE}")
    _check_fit(data, f"efficiency fit {path or FIT_FILE}")
    try:
        return Fit.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise PerfmodelError(f"efficiency fit {path or FIT_FILE}: {exc}") from None


def _check_fit(data, origin: str) -> None:
    """The shape :meth:`Fit.from_dict` reads: an object whose ``groups`` map names to
    objects with finite numbers for the parameters."""
    if not isinstance(data, dict):
        raise PerfmodelError(f"{origin}: expected a JSON object, got {type(data).__name__}")
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        raise PerfmodelError(f"{origin}: groups: expected an object of groups, got {type(groups).__name__}")
    for key, group in groups.items():
        if not isinstance(group, dict):
            raise PerfmodelError(f"{origin}: group {key}: expected an object, got {type(group).__name__}")
        for name in (*PARAMETERS, "rms_log_error"):
            v = group.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise PerfmodelError(f"{origin}: group {key}: {name}: expected a number, got {v!r}")


def today() -> str:
    return datetime.date.today().isoformat()
