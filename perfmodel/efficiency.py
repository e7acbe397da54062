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

Groups without a fit keep the defaults (the catalog's matmul and bandwidth
efficiencies, ``k_half = t_launch = 0``, ``f_causal = 1``): the catalog-efficiency
roofline. The parameters are fitted with the measurements (:mod:`perfmodel.hardware.attention_fit`,
stored in ``hardware/data/efficiency-fit.json``); this module only evaluates a
:class:`Fit` it is handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from perfmodel.errors import PerfmodelError, UnknownNameError

PARAMETERS = ("e_max", "k_half", "f_causal", "e_mem", "t_launch")
FORMULA = ("t = sum over launches of max(C / e_c, M / e_mem) + n_launches * t_launch; "
           "e_c = e_max * k / (k + k_half) * (f_causal if causal else 1); "
           "C, M = the launch's pure-roofline compute and memory seconds (perfmodel.kernels.predict, "
           "efficiency 1; C includes the softmax at the vector rate); k = keys each query sees "
           "(visible pairs / queries)")


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
        reserved = {"formula", "parameters", "date", "trained_on", "notes", "groups"}
        return cls(groups, tuple(data.get("trained_on", ())), data.get("date", ""), data.get("notes", ""),
                   {k: v for k, v in data.items() if k not in reserved})


def families(fit: Fit) -> list[str]:
    """Kernel families that have fitted groups."""
    return sorted({key.split("/")[0] for key in fit.groups})


def calibrated(call, acc, family: str, fit: Fit) -> dict:
    """The calibrated time of ``call`` on ``acc`` for a kernel ``family`` (``fa3``,
    ``flash-decoding``, …): ``calibrated_s``, ``calibrated_tflops_per_s`` and
    ``calibration`` (the group used, or the catalog defaults when it has no fit)."""
    from perfmodel.kernels import predict

    if family not in families(fit):
        raise UnknownNameError("kernel family", family, families(fit))
    pure = predict(call, acc)
    params = fit.for_call(family, "decode" if call.seq_q == 1 else "prefill", acc)
    seconds = params.time(features(call, acc, pure))
    return {"calibrated_s": seconds, "calibrated_tflops_per_s": pure["flops"] / seconds / 1e12,
            "calibration": params.group if params.fitted else f"catalog defaults (no fit for {params.group})"}
