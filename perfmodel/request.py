"""A request: prefill of the batch's prompts, then one decode step per further output
token over the growing context, each step timed three ways: the calibrated cost model
(the default prediction), the pure roofline (the bound) and the flat catalog
efficiencies (the previous model, kept for comparison).

``ttft = prefill(b, N)``; decode step ``i = 1 … M−1`` runs one token against
``N + i − 1`` cached ones; ``e2e = ttft + Σ_i decode_i`` (summed step by step, not at
one context); ``tpot`` is the mean decode step. Each step adds the engine's per-step
overhead (``step_s``, or ``eager_step_s`` without CUDA graphs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfmodel import symbols as S
from perfmodel.cost import Fusion, PARAMETERS, accelerator_terms, compile_step, step_time as cost_step_time
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import value, vectorised
from perfmodel.memory import memory
from perfmodel.roofline import Efficiency, Roof, op_times, step_time as roof_step_time
from perfmodel.scenario import Scenario

STEP = (S.b, S.s, S.t)
PREDICTORS = ("calibrated", "roofline", "flat")


@dataclass(frozen=True)
class Timer:
    """Step seconds of one scenario's phase as numpy functions of ``(b, s, t)``."""

    calibrated: callable
    roofline: callable
    flat: callable


def _fixed(sc: Scenario) -> dict:
    return {k: v for k, v in sc.values.items() if k not in STEP}


def gemm_dtype(sc: Scenario) -> str:
    """The dtype the matrix products run in: the activation dtype (weight-only
    quantization dequantizes to it; FP8 w8a8 has FP8 activations)."""
    return sc.act_dtype


def timer(sc: Scenario, fusion: Fusion = Fusion(), params=None) -> Timer:
    """Compiled step-time functions for ``sc``'s phase on its accelerator."""
    acc = sc.require_accelerator()
    params = params or cost_params(acc)
    ops = [op for op in sc.table.ops if op.pass_ == "fwd"]
    fixed = {**_fixed(sc), **accelerator_terms(acc, params, gemm_dtype(sc))}
    calibrated = compile_step(cost_step_time(ops, fusion), fixed, STEP)
    vector = params.vector(gemm_dtype(sc))
    pure = vectorised(roof_step_time(op_times(ops, Roof.of(acc, sc.act_dtype))), _fixed(sc), STEP)
    flat = vectorised(roof_step_time(op_times(ops, Roof.of(acc, sc.act_dtype, Efficiency.catalog_default(acc)))),
                      _fixed(sc), STEP)
    overhead = params.step_s if fusion.cuda_graphs else params.eager_step_s
    return Timer(lambda b, s, t: calibrated(b, s, t, *vector) + overhead, pure, flat)


def cost_params(acc):
    if getattr(acc, "cost", None) is None:
        raise PerfmodelError(f"accelerator {acc.name!r} has no cost-model parameters")
    return acc.cost


def request(sc: Scenario, prompt: int, output: int, fusion: Fusion = Fusion(), params=None) -> dict:
    """Latency of ``sc.batch`` sequences of ``prompt`` tokens generating ``output``
    tokens each; ``steps``: every decode step's seconds (calibrated)."""
    if output < 1:
        raise PerfmodelError(f"output: {output} must be at least 1 token")
    pre = sc.but(seq=prompt, context=0, phase="prefill")
    dec = sc.but(seq=1, context=prompt, phase="decode")
    dec_timer = timer(dec, fusion, params) if output > 1 else None
    pre_timer = timer(pre, fusion, params)
    contexts = np.arange(prompt, prompt + output - 1, dtype=float)
    row: dict = {}
    for name in PREDICTORS:
        ttft = float(getattr(pre_timer, name)(sc.batch, prompt, 0))
        steps = (np.broadcast_to(getattr(dec_timer, name)(sc.batch, 1, contexts), contexts.shape).astype(float)
                 if dec_timer else np.zeros(0))
        decode = float(steps.sum())
        prefix = "" if name == "calibrated" else f"{name}_"
        row[f"{prefix}ttft_s"] = ttft
        row[f"{prefix}tpot_s"] = decode / len(steps) if len(steps) else float("nan")
        row[f"{prefix}e2e_latency_s"] = ttft + decode
        if name == "calibrated":
            row["_steps"] = steps
    row["output_tokens_per_s"] = sc.batch * output / row["e2e_latency_s"]
    row["output_tokens_per_s_per_user"] = output / row["e2e_latency_s"]
    row["roofline_output_tokens_per_s"] = sc.batch * output / row["roofline_e2e_latency_s"]
    end = sc.but(seq=1, context=prompt + output - 1, phase="decode")
    need = value(memory(end.table)["total_bytes"], end.values) if output > 1 else value(memory(pre.table)["total_bytes"], pre.values)
    row["memory_bytes"] = need
    row["fits"] = need <= sc.accelerator.memory_bytes
    return row
