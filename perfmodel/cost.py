"""The calibrated cost model: each kernel's seconds from named terms whose values are
data carried by the :class:`~hardware.accelerator.Accelerator` (``cost`` parameters
with provenance, ``hardware/data/cost-model.json``), never constants in code.

Three kernel kinds, each one sympy expression over the symbols in
:mod:`perfmodel.symbols` (``perfmodel formula gemm-time`` prints them):

- **GEMM** (``M×K`` activations times a ``K×N`` weight): the matrix rate is the plateau
  ``e_g·R`` reduced by tile and wave quantization over the SMs (tiles ``T_m×T_n``,
  ``T_m`` the power of two ≥ M in ``[T_lo, T_hi]``; fewer tiles than SMs are spread
  by split-K) and by the per-tile ramp ``K/(K + K_h)``; the memory side streams the
  weights at ``e_w·BW`` (the GEMV regime of small M) and the rest at ``e_m·BW``.
  Weight-only quantized weights (int4/int8 under 16-bit activations) are dequantized
  once per M-tile at ``c_q`` vector operations per element. A *grouped* GEMM (the routed
  experts of an MoE layer, as grouped-GEMM kernels run them) is ``G`` GEMMs of ``M/G``
  rows each: tiles, padding rows and waves are counted per group, and each group's
  weights are read once (``X_w`` is the weights of the groups touched).
- **Attention** (QKᵀ, softmax, PV fused as FlashAttention runs them): matrix work at
  ``e_a·R_a`` (``R_a`` the peak of attention's own dtype: 16 bit under FP8 GEMMs, see
  :func:`attention_dtype`) ramped by keys per query ``k/(k + k_h)``, plus the exponentials at the
  special-function rate ``R_x`` and the other softmax work at the vector rate, of
  which the fraction ``o_x`` hides under the matrix products (FlashAttention-3's
  ping-pong schedule overlaps them; FlashAttention-2 does not), against the bytes at
  ``e_m·BW``. Forward and backward launches are kernels of their own.
- **Memory-bound** kernels (norms, RoPE, residuals, KV writes, the embedding gather):
  ``(X + X_h)/(e_m·BW)``, i.e. small transfers run below the plateau bandwidth.

Every kernel adds its fixed time ``t_k`` (measured on kernels timed alone) and, inside
a step, the engine's gap ``t_g`` between kernels; without CUDA graphs a kernel takes
at least the host's launch time ``t_l``. Which ops are kernels is an option (:class:`Fusion`): engines
merge the projections that read one input (QKV, gate/up) into one GEMM and fold
elementwise ops into their neighbours' prologues and epilogues.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sympy import Expr, Float, Integer, Max, Min, Piecewise, Rational, ceiling, log, oo, sympify

from perfmodel import symbols as S
from perfmodel.errors import PerfmodelError
from perfmodel.ops.base import Op

# ----------------------------------------------------------------- the three formulas

#: rows of one group: a grouped GEMM (the routed experts) runs G GEMMs of M/G rows each,
#: every group against its own K×N weight; G = 1 is a plain GEMM
GROUP_ROWS = S.M_g / S.G_g
_T_m = Min(S.T_hi, Max(S.T_lo, 2 ** ceiling(log(GROUP_ROWS, 2))))
_tiles = S.G_g * ceiling(GROUP_ROWS / _T_m) * ceiling(S.N_g / S.T_n)
#: fraction of the SMs' tile slots doing useful work (split-K fills them below one wave)
WAVE_EFFICIENCY = Piecewise((Integer(1), _tiles < S.n_sm), (_tiles / (ceiling(_tiles / S.n_sm) * S.n_sm), True))
#: fraction of each tile's rows that hold real data (per group: each group pads its own last tile)
ROW_EFFICIENCY = GROUP_ROWS / (ceiling(GROUP_ROWS / _T_m) * _T_m)
#: weight-only quantization: each M-tile dequantizes the weights it reads on the vector units
DEQUANT_S = (S.X_w / S.B_w) * S.c_q * ceiling(GROUP_ROWS / _T_m) / S.R_v
GEMM_COMPUTE_S = (S.F_m / (S.R * S.e_g * WAVE_EFFICIENCY * ROW_EFFICIENCY * S.K_g / (S.K_g + S.K_h)) + S.F_v / S.R_v
                  + DEQUANT_S)
GEMM_MEMORY_S = S.X_w / (S.BW * S.e_w) + (S.X_o + S.X_h) / (S.BW * S.e_m)
GEMM_TIME_S = Max(GEMM_COMPUTE_S, GEMM_MEMORY_S) + S.t_k

_matrix_s = S.F_m / (S.R_a * S.e_a * S.N_g / (S.N_g + S.k_h))
_softmax_s = S.N_x / S.R_x + S.F_v / S.R_v
ATTENTION_COMPUTE_S = _matrix_s + _softmax_s - S.o_x * Min(_matrix_s, _softmax_s)
ATTENTION_MEMORY_S = (S.X_o + S.X_h) / (S.BW * S.e_m)
ATTENTION_TIME_S = Max(ATTENTION_COMPUTE_S, ATTENTION_MEMORY_S) + S.t_k
#: the backward (dQ, dK, dV; scores recomputed) reaches a fraction f_b of the forward's plateau
ATTENTION_BACKWARD_TIME_S = ATTENTION_TIME_S.xreplace({S.e_a: S.e_a * S.f_b})

STREAM_TIME_S = Max(S.F_v / S.R_v, (S.X_w + S.X_o + S.X_h) / (S.BW * S.e_m))

FORMULAS = {"gemm-time": GEMM_TIME_S, "attention-time": ATTENTION_TIME_S,
            "attention-backward-time": ATTENTION_BACKWARD_TIME_S, "stream-time": STREAM_TIME_S}

#: the fitted (or defaulted) terms, in the order compiled step functions take them
PARAMETERS = (S.e_g, S.K_h, S.e_w, S.e_m, S.X_h, S.e_a, S.k_h, S.o_x, S.f_b, S.t_k, S.t_g, S.t_l)


@dataclass(frozen=True)
class CostParams:
    """One accelerator's cost-model terms (see the module docstring); ``sources`` says
    where each came from (a fit, a datasheet, a default and its reason)."""

    gemm_efficiency: Mapping[str, float]
    #: the K ramp of 16-bit GEMMs, and of any dtype without its own in ``gemm_k_half_dtype``
    gemm_k_half: float
    weight_stream_efficiency: float
    stream_efficiency: float
    stream_bytes_half: float
    attention_efficiency: float
    attention_k_half: float
    softmax_overlap: float
    attention_backward_fraction: float
    kernel_s: float
    #: between kernels of a step (a GEMM timed alone in a loop hides it)
    gap_s: float
    launch_s: float
    #: per decode/prefill step: engine work outside the kernels (scheduling, sampling)
    step_s: float
    #: the same without CUDA graphs (host-side Python per step)
    eager_step_s: float
    #: vector operations to dequantize one weight-only quantized element (int4/int8 -> 16 bit)
    dequant_ops_per_weight: float = 0.0
    #: exponentials per clock per SM of the special-function units, and the clock (Hz)
    exp_per_clock_per_sm: int | None = None
    clock_hz: float | None = None
    tile_n: int = 128
    tile_m_min: int = 16
    tile_m_max: int = 128
    #: a dtype's own K ramp where its GEMMs were fitted apart (FP8: per-128-K scale promotion
    #: and twice the math per byte make the ramp longer)
    gemm_k_half_dtype: Mapping[str, float] = field(default_factory=dict)
    #: the fraction of the kernels' compute rates (matrix, vector, special-function) a
    #: multi-GPU training step sustains, fitted per die to published training runs
    #: (:mod:`perfmodel.hardware.training_fit`); 1 where none is fitted
    train_compute_fraction: float = 1.0
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "gemm_efficiency", MappingProxyType(dict(self.gemm_efficiency)))
        object.__setattr__(self, "gemm_k_half_dtype", MappingProxyType(dict(self.gemm_k_half_dtype)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        if not 0 <= self.softmax_overlap <= 1:
            raise PerfmodelError(f"cost model: softmax_overlap must be in [0, 1], got {self.softmax_overlap}")
        fractions = {"weight_stream_efficiency": self.weight_stream_efficiency, "stream_efficiency": self.stream_efficiency,
                     "attention_efficiency": self.attention_efficiency,
                     "attention_backward_fraction": self.attention_backward_fraction,
                     "train_compute_fraction": self.train_compute_fraction,
                     **{f"gemm_efficiency[{k}]": v for k, v in self.gemm_efficiency.items()}}
        for name, v in fractions.items():
            if not 0 < v <= 1:
                raise PerfmodelError(f"cost model: {name} must be in (0, 1], got {v}")
        lengths = {name: getattr(self, name) for name in ("gemm_k_half", "stream_bytes_half", "attention_k_half", "kernel_s",
                                                          "gap_s", "launch_s", "step_s", "eager_step_s")}
        lengths.update({f"gemm_k_half_dtype[{k}]": v for k, v in self.gemm_k_half_dtype.items()})
        for name, v in lengths.items():
            if not v >= 0:
                raise PerfmodelError(f"cost model: {name} must be non-negative, got {v}")

    def step_overhead_s(self, cuda_graphs: bool) -> float:
        """The engine's per-step time outside the kernels: with CUDA graphs or without."""
        return self.step_s if cuda_graphs else self.eager_step_s

    def gemm_fraction(self, dtype: str) -> float:
        """The GEMM plateau for ``dtype``: its own fit, else the 16-bit one."""
        for key in (dtype, "bf16", "fp16"):
            if key in self.gemm_efficiency:
                return self.gemm_efficiency[key]
        raise PerfmodelError(f"cost model: no GEMM efficiency for {dtype}")

    def vector(self, dtype: str) -> tuple[float, ...]:
        """The values of :data:`PARAMETERS` for GEMMs in ``dtype``."""
        return (self.gemm_fraction(dtype), self.gemm_k_half_dtype.get(dtype, self.gemm_k_half),
                self.weight_stream_efficiency, self.stream_efficiency,
                self.stream_bytes_half, self.attention_efficiency, self.attention_k_half, self.softmax_overlap,
                self.attention_backward_fraction, self.kernel_s, self.gap_s, self.launch_s)


@dataclass(frozen=True)
class Fusion:
    """Which ops run as their own kernel: ``merge_projections`` puts consecutive GEMMs
    that read the same input (QKV, gate/up) into one; ``fold_elementwise`` runs norms,
    activations, RoPE and residuals inside neighbouring kernels (no kernel cost of
    their own; their bytes still count); ``cuda_graphs`` replays the step without
    host launches."""

    merge_projections: bool = True
    fold_elementwise: bool = True
    cuda_graphs: bool = True


# ----------------------------------------------------------------- ops -> kernels


@dataclass(frozen=True)
class Kernel:
    """One launch: its kind, the formula's inputs as expressions, and how many layers run it."""

    kind: str  # gemm | attention | attention_backward | stream
    name: str
    inputs: Mapping
    repeat: Expr


def _other_bytes(op: Op) -> Expr:
    return op.act_read_bytes + op.kv_read_bytes + op.act_write_bytes + op.kv_write_bytes


def kernels(ops, fusion: Fusion = Fusion()) -> list[Kernel]:
    """The forward ops of a table grouped into kernels."""
    out: list[Kernel] = []
    pending_attention: list[Op] = []

    def flush_attention():
        if pending_attention:
            qk = next(op for op in pending_attention if op.gemm is not None)
            inputs = {S.F_m: sum((o.matmul_flops for o in pending_attention), Integer(0)),
                      S.F_v: sum((o.vector_flops for o in pending_attention), Integer(0)),
                      S.N_x: sum((o.exps for o in pending_attention), Integer(0)),
                      S.X_o: sum((_other_bytes(o) + o.weight_bytes for o in pending_attention), Integer(0)),
                      S.N_g: qk.gemm[1]}
            kind = "attention_backward" if qk.pass_ == "bwd" else "attention"
            out.append(Kernel(kind, f"attn.core.{qk.pass_}", inputs, qk.repeat))
            pending_attention.clear()

    for op in ops:
        if op.core_attention:
            if pending_attention and pending_attention[-1].pass_ != op.pass_:
                flush_attention()
            pending_attention.append(op)
            continue
        flush_attention()
        if op.gemm is not None:
            m, n, k, *groups = op.gemm
            inputs = {S.M_g: m, S.N_g: n, S.K_g: k, S.G_g: groups[0] if groups else Integer(1), S.F_m: op.matmul_flops,
                      S.F_v: op.vector_flops, S.X_w: op.weight_bytes, S.X_o: _other_bytes(op)}
            last = out[-1] if out else None
            if (fusion.merge_projections and last is not None and last.kind == "gemm" and last.repeat == op.repeat
                    and last.inputs[S.M_g] == m and last.inputs[S.K_g] == k and last.inputs[S.G_g] == inputs[S.G_g]
                    and last.inputs["group"] == op.group):
                merged = {key: last.inputs[key] + inputs[key] for key in (S.N_g, S.F_m, S.F_v, S.X_w, S.X_o)}
                # the shared input is read once
                merged[S.X_o] -= op.act_read_bytes
                out[-1] = Kernel("gemm", f"{last.name}+{op.name}", {**last.inputs, **merged}, op.repeat)
                continue
            out.append(Kernel("gemm", op.name, {**inputs, "group": op.group}, op.repeat))
        else:
            inputs = {S.F_v: op.vector_flops, S.X_w: op.weight_bytes, S.X_o: _other_bytes(op)}
            out.append(Kernel("stream", op.name, inputs, op.repeat))
    flush_attention()
    return out


def _bounded(key, v) -> Expr:
    """An input as an expression; a numeric group count (an expectation over routing,
    ``E·(1 − (1 − k/E)^(b·s))``, whose exact rational has thousands of digits at training
    batch sizes) rounded to the nearest 1e-9, as the compiled (float) path sees it: the
    tile ceilings stay cheap, and all E experts touched count as E groups, not E − 10^-115.
    Any other non-integer rational (the bytes of the experts touched) is taken as a float,
    as the compiled path does: it only enters sums, quotients and the roofline's Max."""
    v = sympify(v)
    if v.is_Rational and not v.is_Integer:
        if key == S.G_g:
            return Rational((2 * v.p * 10**9 + v.q) // (2 * v.q), 10**9)
        if key not in (S.M_g, S.N_g, S.K_g):
            return Float(v)
    return v


def kernel_time(kernel: Kernel, fusion: Fusion = Fusion()) -> Expr:
    """One kernel's seconds (one layer), the formula of its kind with its inputs put in."""
    formula = {"gemm": GEMM_TIME_S, "attention": ATTENTION_TIME_S, "attention_backward": ATTENTION_BACKWARD_TIME_S,
               "stream": STREAM_TIME_S}[kernel.kind]
    is_kernel = kernel.kind != "stream" or not fusion.fold_elementwise
    if kernel.kind == "stream" and is_kernel:
        formula = formula + S.t_k
    if is_kernel:
        formula = formula + S.t_g
    time = formula.xreplace({k: _bounded(k, v) for k, v in kernel.inputs.items() if k != "group"})
    defaults = {S.X_w: 0, S.X_o: 0, S.F_v: 0, S.F_m: 0, S.N_x: 0}
    time = time.xreplace({k: Integer(v) for k, v in defaults.items() if k in time.free_symbols})
    if is_kernel and not fusion.cuda_graphs:
        time = Max(time, S.t_l)
    return time


def step_seconds(ops, values: Mapping, fusion: Fusion = Fusion()) -> Expr:
    """:func:`step_time` with every symbol bound by ``values``, each kernel's inputs made
    numbers and put into its formula with the other terms in one substitution (exact,
    and fast: no symbolic ``Max`` to order)."""
    total = Integer(0)
    terms = {key: sympify(v) for key, v in values.items()}
    for k in kernels(ops, fusion):
        numeric = {key: sympify(v).xreplace(values) for key, v in k.inputs.items() if key != "group"}
        bound = Kernel(k.kind, k.name, {**terms, **numeric}, sympify(k.repeat).xreplace(values))
        total += kernel_time(bound, fusion).xreplace(values) * bound.repeat
    return total


def step_time(ops, fusion: Fusion = Fusion()) -> Expr:
    """Seconds of one step's kernels (forward ops), each times the layers that run it."""
    return sum((kernel_time(k, fusion) * k.repeat for k in kernels(ops, fusion)), Integer(0))


def kernel_count(ops, fusion: Fusion = Fusion()) -> Expr:
    """Kernel launches per step: GEMMs and attention, plus elementwise ops unless folded."""
    return sum((k.repeat for k in kernels(ops, fusion) if k.kind != "stream" or not fusion.fold_elementwise), Integer(0))


def attention_dtype(acc, dtype: str) -> str:
    """The dtype fused attention runs in for GEMMs in ``dtype``: FP8 builds keep attention in
    16 bit (TensorRT-LLM's FP8 context FMHA and Transformer Engine's ``fp8_dpa`` are opt-in;
    FlashAttention-2 has no FP8), so an 8-bit ``dtype`` gives the part's bf16 (else fp16)."""
    from perfmodel.units import dtype_bytes

    if dtype_bytes(dtype) >= 2:
        return dtype
    return next((d for d in ("bf16", "fp16") if d in acc.peak_flops_per_s), dtype)


def accelerator_terms(acc, params: CostParams, dtype: str, weight_dtype: str | None = None,
                      attention: str | None = None) -> dict:
    """The constants the formulas take from the accelerator (rates, bandwidth, SMs, tiles)
    and the dequantization work when ``weight_dtype`` is narrower than the GEMM ``dtype``;
    ``attention``: the dtype of fused attention's matrix products (default
    :func:`attention_dtype`: 16 bit under FP8 GEMMs)."""
    from perfmodel.units import dtype_bytes

    weight_only = weight_dtype is not None and dtype_bytes(weight_dtype) < dtype_bytes(dtype)
    vector = acc.vector_peak or acc.peak(dtype)
    # without a published special-function rate, exponentials are priced only as the
    # softmax's vector work
    exp_rate = (acc.sm_count * params.exp_per_clock_per_sm * params.clock_hz
                if params.exp_per_clock_per_sm and params.clock_hz and acc.sm_count else oo)
    return {S.R: acc.peak(dtype), S.R_a: acc.peak(attention or attention_dtype(acc, dtype)), S.R_v: vector, S.R_x: exp_rate, S.BW: acc.memory_bandwidth_bytes_per_s,
            # no SM count (a user's part, TPUs): no wave quantization
            S.n_sm: acc.sm_count or oo, S.T_n: params.tile_n, S.T_lo: params.tile_m_min, S.T_hi: params.tile_m_max,
            S.c_q: params.dequant_ops_per_weight if weight_only else 0}


def compile_step(expr: Expr, fixed: Mapping, free: tuple) -> callable:
    """A numpy function of ``free + PARAMETERS`` for a step-time expression (cached)."""
    from perfmodel.evaluate import vectorised

    return vectorised(expr, fixed, tuple(free) + PARAMETERS)
