"""A calibrated efficiency model for attention kernels: the roofline's ceilings scaled by
small, explainable achievable fractions fitted to measurements.

One parameter set per *group* ``family/regime@accelerator`` (``fa3/prefill@h100-sxm``)::

    t    = Σ_launches max(C / e_c, M / e_mem) + n_launches · t_launch
    e_c  = e_max · k / (k + k_half) · (f_causal if causal else 1)

``C`` and ``M`` are a launch's pure-roofline compute and memory seconds
(:func:`perfmodel.kernels.predict`, efficiency 1; ``C`` already holds the softmax at the
vector rate, which is how the head dim enters), ``k`` the keys each query sees (visible
pairs / queries, :func:`perfmodel.ops.attention.visible_pairs`). ``e_max``: the
achievable fraction of the compute peak at long sequences; ``k_half``: the per-query-row
cost (loading Q, writing O, rescaling) in keys, so short sequences run slower;
``f_causal``: masked and diagonal tiles; ``e_mem``: the achieved fraction of the
bandwidth; ``t_launch``: a fixed cost per launch (launch, split-KV reduction). Dividing
by ``e_c`` is exactly :class:`perfmodel.roofline.Efficiency` (``Roof.compute_time`` is
``FLOPs / (peak·e)``).

Fit: least squares on ``ln t`` (Levenberg–Marquardt, numpy) over the parameters a
group's rows determine (:func:`identifiable`); the others keep their defaults (the
catalog's matmul and bandwidth efficiencies, ``k_half = t_launch = 0``,
``f_causal = 1``), so a group without data is the catalog-efficiency roofline. Fitted
values are data: ``hardware/data/efficiency-fit.json`` with formula, sources and date.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources

import numpy as np

from perfmodel.errors import PerfmodelError, UnknownNameError

PARAMETERS = ("e_max", "k_half", "f_causal", "e_mem", "t_launch")
FORMULA = ("t = sum over launches of max(C / e_c, M / e_mem) + n_launches * t_launch; "
           "e_c = e_max * k / (k + k_half) * (f_causal if causal else 1); "
           "C, M = the launch's pure-roofline compute and memory seconds (perfmodel.kernels.predict, "
           "efficiency 1; C includes the softmax at the vector rate); k = keys each query sees "
           "(visible pairs / queries)")
FIT_METHOD = ("least squares on ln(time), Levenberg-Marquardt (numpy, central-difference Jacobian, "
              "best of 4 starts); bounded by transforms: e_max, f_causal, e_mem = sigmoid(u) in (0, 1); "
              "k_half, t_launch = exp(u) > 0. Fitted: e_max from compute-bound rows, k_half if their "
              "keys per query vary, f_causal if both masks occur; e_mem (and t_launch if sizes vary) "
              "only in groups without compute-bound rows. Unfitted parameters keep their defaults: "
              "the catalog's matmul_efficiency and bandwidth_efficiency, k_half = t_launch = 0, f_causal = 1")
FIT_FILE = "efficiency-fit.json"
_FRACTIONS = ("e_max", "f_causal", "e_mem")


@dataclass(frozen=True)
class Features:
    """What the model needs of one call: pure-roofline seconds per launch and the shape."""

    compute_s: tuple[float, ...]
    memory_s: tuple[float, ...]
    keys: float
    causal: bool

    @property
    def bound(self) -> str:
        return "compute" if sum(self.compute_s) >= sum(self.memory_s) else "memory"


def features(call, acc, prediction: Mapping | None = None) -> Features:
    """:class:`Features` of an :class:`~perfmodel.kernels.AttentionCall` on ``acc``
    (``prediction``: its pure-roofline ``predict(call, acc)``, if already made)."""
    from perfmodel.kernels import predict

    launches = (prediction or predict(call, acc))["launches"]
    return Features(tuple(c for c, _ in launches), tuple(m for _, m in launches),
                    keys_per_query(call), call.causal)


def keys_per_query(call) -> float:
    """Mean keys one query sees, from the model's visible-pair count."""
    from perfmodel.evaluate import value
    from perfmodel.ops.attention import visible_pairs
    from perfmodel.options import Options

    options = Options(phase="prefill", mask="causal" if call.causal else "none", causal_count=call.causal_count)
    return value(visible_pairs(call.attention, options), call.values) / call.seq_q


@dataclass(frozen=True)
class KernelEfficiency:
    """One group's parameters; ``fitted`` names those the data set, the rest are defaults."""

    group: str
    e_max: float = 1.0
    k_half: float = 0.0
    f_causal: float = 1.0
    e_mem: float = 1.0
    t_launch: float = 0.0
    fitted: tuple[str, ...] = ()
    rows: int = 0
    sources: tuple[str, ...] = ()
    rms_log_error: float | None = None

    @classmethod
    def defaults(cls, group: str, acc) -> KernelEfficiency:
        """The catalog-efficiency roofline: what a group without data falls back to."""
        return cls(group, e_max=acc.matmul_efficiency or 1.0, e_mem=acc.bandwidth_efficiency or 1.0)

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, p) for p in PARAMETERS], dtype=float)

    def time(self, feats: Features) -> float:
        """Calibrated seconds of one call."""
        return float(_times(self.vector(), _Batch.of([feats]))[0])


def group_key(family: str, regime: str, accelerator: str) -> str:
    return f"{family}/{regime}@{accelerator}"


def _compute_fraction(theta, keys, causal):
    e_max, k_half, f_causal = theta[0], theta[1], theta[2]
    return e_max * keys / (keys + k_half) * np.where(causal, f_causal, 1.0)


@dataclass(frozen=True)
class _Batch:
    """Features of many calls as padded arrays (one row per call, one column per launch)."""

    compute: np.ndarray
    memory: np.ndarray
    launches: np.ndarray
    keys: np.ndarray
    causal: np.ndarray

    @classmethod
    def of(cls, feats: list[Features]) -> _Batch:
        width = max(len(f.compute_s) for f in feats)
        pad = lambda xs: np.array([list(x) + [0.0] * (width - len(x)) for x in xs], dtype=float)  # noqa: E731
        return cls(pad([f.compute_s for f in feats]), pad([f.memory_s for f in feats]),
                   np.array([len(f.compute_s) for f in feats], float), np.array([f.keys for f in feats], float),
                   np.array([f.causal for f in feats], bool))


def _times(theta, b: _Batch) -> np.ndarray:
    e_c = _compute_fraction(theta, b.keys, b.causal)[:, None]
    per_launch = np.maximum(b.compute / e_c, b.memory / theta[3])
    return per_launch.sum(axis=1) + b.launches * theta[4]


# ------------------------------------------------------------------------ fitting


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


# --------------------------------------------------------------- the stored fit


@dataclass(frozen=True)
class Fit:
    """Fitted groups plus provenance; serialised as ``efficiency-fit.json``."""

    groups: Mapping[str, KernelEfficiency]
    trained_on: tuple[str, ...] = ()
    date: str = ""
    notes: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    def for_call(self, family: str, regime: str, acc) -> KernelEfficiency:
        """The group's parameters, else the catalog defaults (group named, ``fitted`` empty)."""
        key = group_key(family, regime, acc.key or acc.name)
        return self.groups.get(key) or KernelEfficiency.defaults(key, acc)

    def to_dict(self) -> dict:
        return {
            "formula": FORMULA,
            "fit_method": FIT_METHOD,
            "parameters": list(PARAMETERS),
            "date": self.date,
            "trained_on": list(self.trained_on),
            "notes": self.notes,
            **dict(self.extra),
            "groups": {k: {**asdict(g), "fitted": list(g.fitted), "sources": list(g.sources)} for k, g in sorted(self.groups.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Fit:
        known = {f for f in KernelEfficiency.__dataclass_fields__}
        groups = {}
        for key, g in data.get("groups", {}).items():
            unknown = set(g) - known
            if unknown:
                raise PerfmodelError(f"efficiency fit: group {key}: unknown fields {sorted(unknown)}")
            groups[key] = KernelEfficiency(**{**g, "fitted": tuple(g.get("fitted", ())), "sources": tuple(g.get("sources", ()))})
        reserved = {"formula", "fit_method", "parameters", "date", "trained_on", "notes", "groups"}
        return cls(groups, tuple(data.get("trained_on", ())), data.get("date", ""), data.get("notes", ""),
                   {k: v for k, v in data.items() if k not in reserved})

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, allow_nan=False)
            f.write("\n")


def families(fit: Fit) -> list[str]:
    """Kernel families that have fitted groups."""
    return sorted({key.split("/")[0] for key in fit.groups})


def calibrated(call, acc, family: str, fit: Fit | None = None) -> dict:
    """The calibrated time of ``call`` on ``acc`` for a kernel ``family`` (``fa3``,
    ``flash-decoding``, …): ``calibrated_s``, ``calibrated_tflops_per_s`` and
    ``calibration`` (the group used, or the catalog defaults when it has no fit)."""
    from perfmodel.kernels import predict

    fit = fit if fit is not None else load_fit()
    if family not in families(fit):
        raise UnknownNameError("kernel family", family, families(fit))
    pure = predict(call, acc)
    params = fit.for_call(family, "decode" if call.seq_q == 1 else "prefill", acc)
    seconds = params.time(features(call, acc, pure))
    return {"calibrated_s": seconds, "calibrated_tflops_per_s": pure["flops"] / seconds / 1e12,
            "calibration": params.group if params.fitted else f"catalog defaults (no fit for {params.group})"}


def load_fit(path=None) -> Fit:
    """The stored fit (default: ``hardware/data/efficiency-fit.json``) or one at ``path``."""
    try:
        if path is None:
            text = (resources.files("hardware") / "data" / FIT_FILE).read_text(encoding="utf-8")
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise PerfmodelError(f"cannot read efficiency fit {path or FIT_FILE}: {exc.strerror or exc}") from None
    from perfmodel.files import parse_json

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
