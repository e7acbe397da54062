"""Speculative decoding: a draft proposes ``k`` tokens, the target verifies them in one
step of ``k + 1`` new tokens per sequence against the cached context, and keeps the
accepted prefix plus one token of its own.

With each draft token accepted independently with probability ``α`` (Leviathan et al.
2023, eq. 1) a target step yields ``E = (1 − α^(k+1)) / (1 − α)`` tokens; with a
measured acceptance-length distribution ``p_j`` (``j`` draft tokens accepted, ``j = 0…k``)
it yields ``Σ p_j (j + 1)``. A speculative step costs ``k`` draft decode steps plus the
verify step (a draft with zero cost — n-gram lookup, self-speculation — costs only the
verify). The speedup against plain decoding at batch ``b`` is
``E · T(b, 1) / (k · T_draft(b, 1) + T(b, k + 1))``: while decode is memory-bound the
verify of ``k + 1`` tokens costs little more than one token, so time per token falls
even though FLOPs per accepted token rise; once the batch makes the step compute-bound
the extra FLOPs cost time, and above some batch speculation stops paying.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sympy import symbols

from perfmodel.cost import Fusion
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import value, vectorised
from perfmodel.metrics import totals
from perfmodel.request import STEP, _fixed, cost_params, gemm_dtype, timer
from perfmodel.scenario import Scenario

ALPHA, K = symbols("alpha k", positive=True)
#: tokens per target step with per-token acceptance α (Leviathan et al. 2023, eq. 1)
EXPECTED_TOKENS = (1 - ALPHA ** (K + 1)) / (1 - ALPHA)


@dataclass(frozen=True)
class Acceptance:
    """Per-token acceptance ``alpha`` or a distribution ``lengths`` (``lengths[j]`` the
    probability that ``j`` of the ``k`` draft tokens are accepted)."""

    k: int
    alpha: float | None = None
    lengths: tuple[float, ...] = ()

    def __post_init__(self):
        if not isinstance(self.k, int) or self.k < 1:
            raise PerfmodelError(f"k: {self.k} speculated tokens; must be at least 1")
        if (self.alpha is None) == (not self.lengths):
            raise PerfmodelError("give an acceptance rate alpha or an acceptance-length distribution, one of them")
        if self.alpha is not None and not 0 <= self.alpha < 1:
            raise PerfmodelError(f"alpha: {self.alpha} must be in [0, 1)")
        if self.lengths:
            if len(self.lengths) != self.k + 1:
                raise PerfmodelError(f"acceptance lengths: {len(self.lengths)} probabilities given; k = {self.k} needs {self.k + 1} (0 … k accepted)")
            if any(not p >= 0 for p in self.lengths) or abs(sum(self.lengths) - 1) > 1e-6:
                raise PerfmodelError(f"acceptance lengths: must be non-negative and sum to 1, got sum {sum(self.lengths):g}")

    def expected_tokens(self) -> float:
        """Tokens one target step yields."""
        if self.alpha is not None:
            return float(value(EXPECTED_TOKENS.subs({ALPHA: self.alpha, K: self.k}), {})) if self.alpha > 0 else 1.0
        return float(sum(p * (j + 1) for j, p in enumerate(self.lengths)))


def check_draft(target: Scenario, draft: Scenario) -> None:
    if draft.arch.vocab_size != target.arch.vocab_size:
        raise PerfmodelError(f"draft {draft.arch.name}: vocabulary {draft.arch.vocab_size} differs from the target's "
                             f"{target.arch.vocab_size} ({target.arch.name}); a draft must share the tokenizer")


def _flops(sc: Scenario):
    ops = [op for op in sc.table.ops if op.pass_ == "fwd"]
    return vectorised(totals(ops, ("flops",))["flops"], _fixed(sc), STEP)


def _seconds(sc: Scenario, fusion: Fusion):
    params = cost_params(sc.require_accelerator())
    t = timer(sc, fusion, params)
    return lambda b, s, ctx: t.calibrated(b, s, ctx, params, gemm_dtype(sc), fusion)


def _bound(sc: Scenario):
    from perfmodel.roofline import Roof, op_times, step_terms

    ops = [op for op in sc.table.ops if op.pass_ == "fwd"]
    compute, memory = step_terms(op_times(ops, Roof.of(sc.require_accelerator(), sc.act_dtype)))
    c, m = vectorised(compute, _fixed(sc), STEP), vectorised(memory, _fixed(sc), STEP)
    return lambda b, s, ctx: "compute" if c(b, s, ctx) >= m(b, s, ctx) else "memory"


def report(target: Scenario, draft: Scenario | None, acceptance: Acceptance, context: int, batches,
           fusion: Fusion = Fusion()):
    """One row per batch: plain and speculative time per token, the speedup, FLOPs per
    accepted token both ways, the roofline bound of the plain and the verify step; ``break_even_batch`` is the first
    batch at which speculation stops paying (None: not below the largest batch)."""
    import pandas as pd

    from perfmodel.memory import memory

    if draft is not None:
        check_draft(target, draft)
    if context < 1:
        raise PerfmodelError(f"context: {context} must be at least 1 token")
    k, e = acceptance.k, acceptance.expected_tokens()
    dec = target.but(phase="decode", seq=1, context=context, batch=1)
    ver = target.but(phase="decode", seq=k + 1, context=context, batch=1)
    plain_s, verify_s = _seconds(dec, fusion), _seconds(ver, fusion)
    plain_f, verify_f = _flops(dec), _flops(ver)
    bound, verify_bound = _bound(dec), _bound(ver)
    if draft is not None:
        dd = draft.but(phase="decode", seq=1, context=context, batch=1)
        draft_s, draft_f = _seconds(dd, fusion), _flops(dd)
    else:
        draft_s = draft_f = (lambda b, s, t: 0.0)
    rows = []
    for b in batches:
        t_plain = float(plain_s(b, 1, context))
        t_draft = k * float(draft_s(b, 1, context))
        t_verify = float(verify_s(b, k + 1, context))
        t_spec = t_draft + t_verify
        f_plain = float(plain_f(b, 1, context)) / b
        f_spec = (k * float(draft_f(b, 1, context)) + float(verify_f(b, k + 1, context))) / (b * e)
        # the target's verify step and the draft's (weights, cache of the context, activations)
        end = target.but(phase="decode", seq=k + 1, context=context, batch=b)
        need = value(memory(end.table)["total_bytes"], end.values)
        if draft is not None:
            last = draft.but(phase="decode", seq=1, context=context + k - 1, batch=b)
            need += value(memory(last.table)["total_bytes"], last.values)
        rows.append({"batch": b, "k": k, "expected_tokens_per_step": e, "plain_tpot_s": t_plain,
                     "draft_s": t_draft, "verify_s": t_verify, "speculative_step_s": t_spec,
                     "speculative_tpot_s": t_spec / e, "speedup": e * t_plain / t_spec,
                     "plain_flops_per_token": f_plain, "speculative_flops_per_token": f_spec,
                     "flops_ratio": f_spec / f_plain, "plain_bound": bound(b, 1, context),
                     "verify_bound": verify_bound(b, k + 1, context),
                     "memory_needed_bytes": need, "capacity_bytes": target.accelerator.memory_bytes,
                     "fits": bool(need <= target.accelerator.memory_bytes)})
    frame = pd.DataFrame(rows)
    losing = frame[frame["speedup"] < 1]
    frame.insert(0, "break_even_batch", int(losing["batch"].iloc[0]) if len(losing) else None)
    labels = {"model": target.arch.name, "draft": draft.arch.name if draft is not None else "none (zero cost)",
              "gpu": target.accelerator.name, "context": context,
              "alpha": acceptance.alpha if acceptance.alpha is not None else np.nan}
    for key, v in reversed(list(labels.items())):
        frame.insert(0, key, v)
    return frame


EXPLANATION = ("speculative decoding: FLOPs per accepted token go up (k draft steps and k+1 verified tokens "
               "per {e:.2f} kept), while time per token goes down as long as decode is memory-bound (the verify "
               "reads the weights once for k+1 tokens); it stops paying at batch {b}.")
