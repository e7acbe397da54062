"""The FLOP counts per token that published training runs divide by, one per source.

A paper's "TFLOP/s per GPU" is ``tokens/s per GPU × FLOPs per token`` under the paper's
own count, and its MFU is that over the peak it names; so a published rate becomes
tokens/s per GPU (which needs no convention) by dividing by the same count. Each count
is a sympy expression in :mod:`perfmodel.symbols` (``s``: sequence length), evaluated
with the model's dimensions; the source and what it counts are stated with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import Expr, Integer

from perfmodel import symbols as S


@dataclass(frozen=True)
class Convention:
    """A named FLOP count per trained token, with where it is defined."""

    name: str
    source: str
    counts: str


#: Narayanan et al. 2021 (arXiv 2104.04473) §5.1 Eq. 3, F = 96·B·s·l·h²·(1 + s/6h + V/16lh) per
#: iteration, divided by the B·s tokens: forward, backward and the recomputed forward
#: (factor 4 of 2·matmul), attention scores not halved for causality, logits once.
NARAYANAN_EQ3: Expr = 96 * S.L * S.d**2 * (1 + S.s / (6 * S.d) + S.V / (16 * S.L * S.d))

#: Megatron-LM ``num_floating_point_operations(args, batch_size)`` divided by batch·seq, at
#: the commit that published the 2024 H100 table (megatron/training/training.py at
#: f2e5db402c, unchanged at core_r0.8.0 = baf94af3): 12·L·h²·((1 + g/a + s/h)·q/h
#: + (f/h)·k·glu + V/(2·L·h)), q = kv_channels·heads = n_h·d_h, g = query groups = n_kv;
#: written for the dense GeLU GPTs of that table (one expert, glu multiplier 1). No
#: recomputation, attention scores not halved (the halving came later).
MEGATRON_CORE_2024: Expr = 12 * S.L * S.d**2 * ((1 + S.n_kv / S.n_h + S.s / S.d) * S.n_h * S.d_h / S.d
                                                 + S.d_ff / S.d + S.V / (2 * S.L * S.d))


def palm_mfu(total_params: Expr) -> Expr:
    """PaLM's model FLOPs per token (Chowdhery et al. 2022, arXiv 2204.02311, App. B):
    ``6N + 12·L·H·Q·T`` with N the parameters, H query heads of size Q, T the sequence;
    no recomputation, attention scores not halved. Llama 3 (arXiv 2407.21783 §3.3.2)
    cites it for its "BF16 MFU"."""
    return 6 * total_params + 12 * S.L * S.n_h * S.d_h * S.s


CONVENTIONS = {
    "narayanan-eq3": Convention(
        "narayanan-eq3", "Narayanan et al. 2021 Eq. 3 (also bigscience Megatron-DeepSpeed megatron/training.py at "
        "ae6277f5, BLOOM's log, and MT-NLG: Section 2.4's 60.1 s/iteration at 2240 GPUs is 126 TFLOP/s by it)",
        "96·L·h²·(1 + s/6h + V/16Lh) per token: fwd + bwd + recomputed fwd, full attention square"),
    "megatron-core-2024": Convention(
        "megatron-core-2024", "Megatron-LM num_floating_point_operations, megatron/training/training.py at f2e5db402c",
        "12·L·h²·((1 + g/a + s/h)·q/h + f/h + V/2Lh) per token: fwd + bwd, no recompute, full attention square"),
    "palm-6n": Convention(
        "palm-6n", "Chowdhery et al. 2022 App. B (Llama 3 §3.3.2 cites it; MegaScale's Table 2 MFU and "
        "throughput agree with it)", "6N + 12·L·n_h·d_h·s per token: fwd + bwd, no recompute, full attention square"),
}


def flops_per_token(name: str, arch, seq: int) -> float:
    """Convention ``name``'s FLOPs per trained token for ``arch`` at sequence ``seq``."""
    values = {**arch.symbol_values, S.s: seq}
    if name == "narayanan-eq3":
        expr = NARAYANAN_EQ3
    elif name == "megatron-core-2024":
        expr = MEGATRON_CORE_2024
    else:
        from perfmodel.metrics import params
        from perfmodel.options import Options
        from perfmodel.table import build

        expr = palm_mfu(params(build(arch, Options(phase="train")))["total_params"])
    return float(Integer(1) * expr.subs(values))


def tokens_per_s_per_gpu(metric: str, value: float, flops: float, peak_flops_per_s: float) -> float:
    """A published rate as tokens/s per GPU: ``tflops_per_gpu`` is TFLOP/s; ``mfu``,
    ``hfu``, ``pct_peak_hfu`` are percentages of ``peak_flops_per_s``."""
    achieved = value * 1e12 if metric == "tflops_per_gpu" else value / 100 * peak_flops_per_s
    return achieved / flops
