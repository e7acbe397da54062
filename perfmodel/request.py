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

from sympy import Expr

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
    """Step seconds of one scenario's phase as numpy functions of ``(b, s, t)``: the
    cost model's kernels take the :data:`~perfmodel.cost.PARAMETERS` values after them."""

    kernels: callable
    roofline: callable
    flat: callable

    def calibrated(self, b, s, t, params, dtype: str, fusion: Fusion):
        overhead = params.step_overhead_s(fusion.cuda_graphs)
        return self.kernels(b, s, t, *params.vector(dtype)) + overhead


def _fixed(sc: Scenario) -> dict:
    return {k: v for k, v in sc.values.items() if k not in STEP}


def gemm_dtype(sc: Scenario) -> str:
    """The dtype the matrix products run in: the scenario's ``gemm_dtype`` (FP8 w8a8
    between 16-bit activations), else the activation dtype (weight-only quantization
    dequantizes to it)."""
    return sc.gemm_dtype or sc.act_dtype


def cost_params(acc):
    if getattr(acc, "cost", None) is None:
        raise PerfmodelError(f"accelerator {acc.name!r} has no cost-model parameters")
    return acc.cost


def timer(sc: Scenario, fusion: Fusion, params) -> Timer:
    """Compiled step-time functions for ``sc``'s phase on its accelerator, built once per
    model, phase, dtypes, accelerator and fusion (the fitted terms stay arguments)."""
    acc = sc.require_accelerator()
    terms = accelerator_terms(acc, params, gemm_dtype(sc), sc.weight_dtype)
    key = (sc.arch, sc.options, sc.weight_dtype, sc.act_dtype, sc.kv_dtype, sc.gemm_dtype, sc.embed_dtype, sc.weight_group_size,
           acc.name, tuple(sorted((str(k), float(v)) for k, v in terms.items())), acc.matmul_efficiency,
           acc.bandwidth_efficiency, fusion, sc.layout, sc.stage)
    if key not in _TIMERS:
        ops = [op for op in sc.table.ops if op.pass_ == "fwd"]
        fixed = _fixed(sc)
        pure = vectorised(roof_step_time(op_times(ops, Roof.of(acc, gemm_dtype(sc)))), fixed, STEP)
        flat = vectorised(roof_step_time(op_times(ops, Roof.of(acc, gemm_dtype(sc), Efficiency.catalog_default(acc)))),
                          fixed, STEP)
        _TIMERS[key] = Timer(compile_step(cost_step_time(ops, fusion), {**fixed, **terms}, STEP), pure, flat)
    return _TIMERS[key]


_TIMERS: dict = {}


def _terms(sc: Scenario, fusion: Fusion) -> tuple[list, dict, float]:
    """The step's forward ops, every cost-model term as an exact number, and the per-step overhead."""
    acc = sc.require_accelerator()
    params = cost_params(acc)
    dtype = gemm_dtype(sc)
    terms = {**accelerator_terms(acc, params, dtype, sc.weight_dtype), **dict(zip(PARAMETERS, params.vector(dtype)))}
    overhead = params.step_overhead_s(fusion.cuda_graphs)
    ops = [op for op in sc.table.ops if op.pass_ == "fwd"]
    return ops, {k: nsimplify_rate(v) for k, v in terms.items()}, overhead


def calibrated_step(sc: Scenario, fusion: Fusion = Fusion()) -> Expr:
    """The calibrated step time of ``sc`` as one expression over ``b``, ``s``, ``t``: the
    cost model's kernels with the accelerator's terms and fitted values put in, plus the
    per-step overhead."""
    ops, terms, overhead = _terms(sc, fusion)
    return cost_step_time(ops, fusion).xreplace(terms) + nsimplify_rate(overhead)


def calibrated_seconds(sc: Scenario, fusion: Fusion = Fusion()) -> float:
    """:func:`calibrated_step` at the scenario's own ``b``, ``s``, ``t``, as a number."""
    from perfmodel.cost import step_seconds
    from perfmodel.evaluate import number

    ops, terms, overhead = _terms(sc, fusion)
    return float(number(step_seconds(ops, {**sc.values, **terms}, fusion))) + overhead


def nsimplify_rate(v):
    """A float term as an exact rational (so formulas stay exact sympy)."""
    from sympy import Rational, oo

    return oo if v == oo else Rational(str(float(v))) if not isinstance(v, int) else v


def latency(seconds, prompt: int, output: int) -> dict:
    """``ttft_s``, ``tpot_s``, ``e2e_latency_s`` and every decode step (``steps``) from
    ``seconds(phase, s, t)``: the prefill of ``prompt`` tokens, then one step per further
    output token against ``prompt + i − 1`` cached tokens, summed step by step."""
    import numpy as np  # here: `roofline` needs only calibrated_seconds, and starts faster without numpy

    contexts = np.arange(prompt, prompt + output - 1, dtype=float)
    ttft = float(seconds("prefill", prompt, 0))
    steps = (np.broadcast_to(seconds("decode", 1, contexts), contexts.shape).astype(float)
             if output > 1 else np.zeros(0))
    decode = float(steps.sum())
    return {"ttft_s": ttft, "tpot_s": decode / len(steps) if len(steps) else float("nan"),
            "e2e_latency_s": ttft + decode, "steps": steps}


def timers(sc: Scenario, prompt: int, output: int, fusion: Fusion, params) -> dict:
    """The prefill and decode :class:`Timer` of a request."""
    pre = sc.but(seq=prompt, context=0, phase="prefill")
    dec = sc.but(seq=1, context=prompt, phase="decode")
    return {"prefill": timer(pre, fusion, params), "decode": timer(dec, fusion, params) if output > 1 else None}


def seconds_of(sc: Scenario, timers_: dict, predictor: str, fusion: Fusion, params):
    """``seconds(phase, s, t)`` of one predictor for :func:`latency`."""
    dtype = gemm_dtype(sc)
    if predictor == "calibrated":
        return lambda phase, s, t: timers_[phase].calibrated(sc.batch, s, t, params, dtype, fusion)
    return lambda phase, s, t: getattr(timers_[phase], predictor)(sc.batch, s, t)


def request(sc: Scenario, prompt: int, output: int, fusion: Fusion = Fusion(), params=None) -> dict:
    """Latency of ``sc.batch`` sequences of ``prompt`` tokens generating ``output``
    tokens each, by every predictor (calibrated unprefixed, then ``roofline_``,
    ``flat_``), with throughput, memory and ``fits``; ``_<predictor>_steps``: each decode step."""
    if output < 1:
        raise PerfmodelError(f"output: {output} must be at least 1 token")
    params = params or cost_params(sc.require_accelerator())
    timers_ = timers(sc, prompt, output, fusion, params)
    row: dict = {}
    for name in PREDICTORS:
        result = latency(seconds_of(sc, timers_, name, fusion, params), prompt, output)
        prefix = "" if name == "calibrated" else f"{name}_"
        for key in ("ttft_s", "tpot_s", "e2e_latency_s"):
            row[prefix + key] = result[key]
        row[f"_{prefix or 'calibrated_'}steps"] = result["steps"]
    row["output_tokens_per_s"] = sc.batch * output / row["e2e_latency_s"]
    row["output_tokens_per_s_per_user"] = output / row["e2e_latency_s"]
    row["roofline_output_tokens_per_s"] = sc.batch * output / row["roofline_e2e_latency_s"]
    end = sc.but(seq=1, context=prompt + output - 1, phase="decode") if output > 1 else sc.but(seq=prompt, context=0, phase="prefill")
    need = value(memory(end.table)["total_bytes"], end.values)
    row["memory_bytes"] = need
    row["fits"] = need <= sc.accelerator.memory_bytes
    return row


def report(sc: Scenario, prompt: int, output: int, fusion: Fusion = Fusion(), *, by: str = "total"):
    """:func:`request` as a DataFrame: one row (``by="total"``) or one per decode step
    (``by="step"``: ``step``, ``context``, calibrated ``time_s``, ``roofline_time_s``,
    ``elapsed_s`` since the request began)."""
    import numpy as np
    import pandas as pd

    acc = sc.require_accelerator()
    row = request(sc, prompt, output, fusion)
    labels = {"model": sc.arch.name, "gpu": acc.name, "batch": sc.batch, "prompt": prompt, "output": output,
              "weight_dtype": sc.weight_dtype, "act_dtype": sc.act_dtype, "kv_dtype": sc.kv_dtype}
    if by == "step":
        steps = row["_calibrated_steps"]
        frame = pd.DataFrame({"step": np.arange(1, len(steps) + 1), "context": np.arange(prompt, prompt + len(steps)),
                              "time_s": steps, "roofline_time_s": row["_roofline_steps"]})
        frame["elapsed_s"] = row["ttft_s"] + np.cumsum(steps)
        first = pd.DataFrame([{"step": 0, "context": 0, "time_s": row["ttft_s"], "roofline_time_s": row["roofline_ttft_s"],
                               "elapsed_s": row["ttft_s"]}])
        frame = pd.concat([first, frame], ignore_index=True)
        frame["fits"] = row["fits"]
        frame["memory_bytes"] = row["memory_bytes"]
        for k, v in reversed(list(labels.items())):
            frame.insert(0, k, v)
        return frame
    if by != "total":
        raise PerfmodelError(f"by: {by!r} is not one of total, step")
    keep = ("ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s", "output_tokens_per_s_per_user", "fits",
            "memory_bytes", "roofline_ttft_s", "roofline_tpot_s", "roofline_e2e_latency_s", "roofline_output_tokens_per_s")
    out = {**labels, **{k: row[k] for k in keep}, "capacity_bytes": acc.memory_bytes,
           "kernels_per_step": kernel_launches(sc.but(seq=1, context=prompt, phase="decode"), fusion),
           "calibrated_error": acc.cost.sources.get("validation", "not validated")}
    return pd.DataFrame([out])


def kernel_launches(sc: Scenario, fusion: Fusion) -> int:
    """Kernel launches in one step of ``sc`` (from the operator table and the fusion)."""
    from perfmodel.cost import kernel_count

    return value(kernel_count([op for op in sc.table.ops if op.pass_ == "fwd"], fusion), sc.values)
