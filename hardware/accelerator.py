"""The frozen ``Accelerator``: dense peak rate per dtype, memory bandwidth and capacity.

Rates are plain numbers in base units (FLOP/s, bytes/s, bytes). Peaks are *dense*
(no 2:4 sparsity). A dtype without a published peak is an error, never a guess.
Efficiency fractions (achievable / peak) are kept apart from the peaks so both the
pure roofline and the expected time stay visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from perfmodel.errors import PerfmodelError
from perfmodel.units import DTYPES

@dataclass(frozen=True)
class Accelerator:
    """One accelerator (a catalog row, a user file, or a measurement of this device)."""

    name: str
    memory_bytes: int
    memory_bandwidth_bytes_per_s: float
    #: dense peak FLOP/s (or OP/s for int8) per dtype; "fp32" is the non-tensor FP32 rate
    peak_flops_per_s: Mapping[str, float]
    #: rate for elementwise work (norms, softmax, activations); defaults to the fp32 peak
    vector_flops_per_s: float | None = None
    key: str = ""
    vendor: str = ""
    aliases: tuple[str, ...] = ()
    l2_bytes: int | None = None
    sm_count: int | None = None
    interconnect_bytes_per_s: float | None = None
    pcie_gen: int | None = None
    tdp_w: float | None = None
    #: achievable fraction of the matmul peak for large well-shaped GEMMs (hw-notes §4)
    matmul_efficiency: float | None = None
    #: achievable fraction of the nominal memory bandwidth for streaming kernels
    bandwidth_efficiency: float | None = None
    efficiency_source: str = ""
    source: str = ""
    notes: str = ""
    measured: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)
    #: the calibrated cost model's terms (perfmodel.cost.CostParams), with their sources
    cost: object = None
    #: links and collective parameters (perfmodel.collectives.Fabric), None when unknown
    fabric: object = None

    def __post_init__(self):
        object.__setattr__(self, "peak_flops_per_s", MappingProxyType(dict(self.peak_flops_per_s)))
        if self.memory_bandwidth_bytes_per_s is None or not self.memory_bandwidth_bytes_per_s > 0:
            raise PerfmodelError(
                f"accelerator {self.name!r}: memory_bandwidth_bytes_per_s must be positive, "
                f"got {self.memory_bandwidth_bytes_per_s}"
            )
        if self.memory_bytes is None or not self.memory_bytes > 0:
            raise PerfmodelError(f"accelerator {self.name!r}: memory_bytes must be positive, got {self.memory_bytes}")
        for dtype, rate in self.peak_flops_per_s.items():
            if dtype not in DTYPES:
                raise PerfmodelError(f"accelerator {self.name!r}: unknown dtype {dtype!r} in peaks (known: {', '.join(DTYPES)})")
            if not rate > 0:
                raise PerfmodelError(f"accelerator {self.name!r}: peak for {dtype} must be positive, got {rate}")
        for name in ("matmul_efficiency", "bandwidth_efficiency"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise PerfmodelError(f"accelerator {self.name!r}: {name} must be in (0, 1], got {value}")

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for matmuls in ``dtype``; an error if the part publishes none."""
        try:
            return self.peak_flops_per_s[dtype]
        except KeyError:
            have = ", ".join(sorted(self.peak_flops_per_s)) or "none"
            raise PerfmodelError(
                f"accelerator {self.name!r} has no published peak for {dtype} (it has: {have})"
            ) from None

    @property
    def vector_peak(self) -> float | None:
        """FLOP/s for elementwise work: the explicit vector rate, else the fp32 peak, else
        None (TPUs and Gaudi publish no vector rate; the roofline then says so)."""
        return self.vector_flops_per_s or self.peak_flops_per_s.get("fp32")

    def ridge_point(self, dtype: str) -> float:
        """Arithmetic intensity (FLOP/byte) at which the roofline turns from memory to compute."""
        return self.peak(dtype) / self.memory_bandwidth_bytes_per_s
