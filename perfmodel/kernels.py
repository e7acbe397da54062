"""One attention kernel call (``scaled_dot_product_attention``-shaped), predicted by
the same attention builder and roofline as the model tables.

FLOPs follow the FlashAttention papers (hw-notes §3): matmuls only, forward
``4·B·Sq·Skv·H·D`` halved when causal (``causal_count="half"``, the default here; the
exact ``s(s+1)/2`` count is an option), backward 2.5× forward (QKᵀ is recomputed).
A fused kernel is one launch: its time is ``max(Σ compute, Σ memory)`` over its
parts; a naive one runs QKᵀ, softmax and PV as separate kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import Integer, Rational

from perfmodel import symbols as S
from perfmodel.architecture import Attention
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import value
from perfmodel.ops.attention import attention_core
from perfmodel.ops.base import Site
from perfmodel.options import Options
from perfmodel.roofline import Efficiency, Roof
from perfmodel.table import backward
from perfmodel.units import dtype_bytes

PASSES = ("fwd", "bwd", "fwd_bwd")


@dataclass(frozen=True)
class AttentionCall:
    """Shapes of one attention call: ``seq_q`` queries against ``seq_kv`` keys per head."""

    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    seq_q: int
    seq_kv: int
    causal: bool = True
    dtype: str = "bf16"
    pass_: str = "fwd"
    causal_count: str = "half"
    impl: str = "fused"
    window: int | None = None

    def __post_init__(self):
        for name in ("batch", "heads", "kv_heads", "head_dim", "seq_q", "seq_kv"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise PerfmodelError(f"{name}: must be a positive integer, got {v!r}")
        if self.seq_kv < self.seq_q:
            raise PerfmodelError(f"seq-kv ({self.seq_kv}) must be at least seq-q ({self.seq_q}): the queries are the last keys")
        if self.pass_ not in PASSES:
            raise PerfmodelError(f"pass: {self.pass_!r} is not one of {', '.join(PASSES)}")
        dtype_bytes(self.dtype)
        self.attention  # noqa: B018 - validates heads and window

    @property
    def attention(self) -> Attention:
        return Attention(self.heads, self.kv_heads, self.head_dim, sliding_window=self.window)

    @property
    def values(self) -> dict:
        element = Rational(dtype_bytes(self.dtype))
        values = {
            S.b: Integer(self.batch),
            S.s: Integer(self.seq_q),
            S.t: Integer(self.seq_kv - self.seq_q),
            S.n_h: Integer(self.heads),
            S.n_kv: Integer(self.kv_heads),
            S.d_h: Integer(self.head_dim),
            S.B_a: element,
            S.B_kv: element,
            S.B_w: element,
        }
        if self.window:
            values[S.W] = Integer(self.window)
        return values

    def kernels(self) -> list[list]:
        """The launches of this call, each a list of ops: forward, backward, or both."""
        options = Options(
            phase="prefill",
            attention_impl=self.impl,
            mask="causal" if self.causal else "none",
            causal_count=self.causal_count,
        )
        forward = list(attention_core(Site(), self.attention, options, heads=S.n_h, qk_dim=S.d_h, v_dim=S.d_h,
                                      k_per_key=S.n_kv * S.d_h, v_per_key=S.n_kv * S.d_h))
        launches = {"fwd": [forward], "bwd": [[backward(op) for op in forward]]}
        launches["fwd_bwd"] = launches["fwd"] + launches["bwd"]
        chosen = launches[self.pass_]
        if self.impl == "naive":
            return [[op] for launch in chosen for op in launch]
        return chosen


def predict(call: AttentionCall, acc, efficiency: Efficiency = Efficiency()) -> dict:
    """FLOPs, bytes, roofline time and achieved-rate prediction for ``call`` on ``acc``;
    ``launches`` keeps each launch's ``(compute_s, memory_s)`` for calibrated models."""
    roof = Roof.of(acc, call.dtype, efficiency)
    values = call.values
    # counts stay exact (ints, or floats only where the causal-half convention gives halves)
    total = {"flops": 0, "vector_flops": 0, "bytes": 0, "compute_s": 0.0, "memory_s": 0.0, "predicted_s": 0.0}
    launches = []
    for launch in call.kernels():
        compute = sum(value(roof.compute_time(op.matmul_flops, op.vector_flops), values) for op in launch)
        memory = sum(value(roof.memory_time(op.bytes), values) for op in launch)
        total["flops"] += sum(value(op.matmul_flops, values) for op in launch)
        total["vector_flops"] += sum(value(op.vector_flops, values) for op in launch)
        total["bytes"] += sum(value(op.bytes, values) for op in launch)
        total["compute_s"] += compute
        total["memory_s"] += memory
        total["predicted_s"] += max(compute, memory)
        launches.append((compute, memory))
    total["predicted_tflops_per_s"] = total["flops"] / total["predicted_s"] / 1e12
    total["bound"] = "compute" if total["compute_s"] >= total["memory_s"] else "memory"
    total["launches"] = tuple(launches)  # (compute_s, memory_s) of each launch, in order
    return total
