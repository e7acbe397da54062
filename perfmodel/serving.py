"""Serving: the steady state of continuous batching on one deployment.

**Queueing model.** Requests of a workload (prompt and output lengths, fixed or a
discrete distribution) run under continuous (in-flight) batching. The model is a
*closed-loop steady state*: ``C`` requests are in the system at all times (a finished
request is replaced at once, as a benchmark client at fixed concurrency does). Every
engine step runs one decode token for each of the ``d`` sequences past their prefill,
and — with chunked prefill — up to ``budget − d`` prompt tokens of the sequences still
prefilling (a *prefill step*); without chunked prefill a prompt runs in a step of its
own and the decoding sequences wait for it. Rates balance in the mean (fluid
approximation):

- decode tokens per second ``d / T̄ = X·E[M − 1]`` (``X`` requests/s, ``T̄`` the mean step);
- prompt tokens per second ``X·E[P]`` fill a fraction ``f`` of the steps;
- Little's law ``C = X·E[ttft + (M − 1)·tpot]`` closes the system.

A mixed step's time is the calibrated cost model's (:mod:`perfmodel.cost`): the
projections, MLP and LM head run once over all the step's tokens (the weights are read
once; the prefill table's form, e.g. MLA expanded), attention runs per group (decode
sequences at their mean context; the prefill chunk against the mean cached prefix),
plus the engine's per-step overhead. A decode-only step is exactly the request
model's decode step, a prompt alone its prefill step.

**Rate mode** (open loop, Poisson arrivals at ``λ``): the concurrency is the one whose
closed-loop throughput is ``λ``, and admission adds an M/D/1 wait
``ρ·S / (2(1 − ρ))`` with ``S = 1/X_max`` and ``ρ = λ/X_max`` to the TTFT.

**Limits.** Means, not a simulation: no step-to-step variance of the batch, no
preemption or eviction (KV is reserved per request, or held at its mean need), no
scheduler idle time, one prompt per non-chunked prefill step. p50/p90 come only from
the workload's length distribution (the spread of the M/D/1 wait is not modelled).

The deployment is a :class:`StepModel` (step seconds of a mixed batch and the KV
memory it holds); :func:`single_gpu` builds one for one GPU; a sharded layout is
another ``StepModel`` with its own ``gpus``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sympy import Integer, Rational, ceiling, floor, symbols as _symbols

from perfmodel.cost import Fusion, accelerator_terms, compile_step, kernel_time, kernels
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import value, vectorised
from perfmodel.request import STEP, _fixed, cost_params, gemm_dtype
from perfmodel.roofline import Roof, op_times
from perfmodel.scenario import Scenario

# ----------------------------------------------------------------- KV capacity (paged)

#: KV pool bytes, bytes per token of KV, block size, prompt tokens per request (after
#: the cached prefix), output tokens, tokens of the shared cached prefix
KV_POOL, KV_TOKEN, BLOCK, PROMPT_NEW, OUTPUT, PREFIX, REQUEST_BLOCKS = _symbols(
    "X_kv x_kv B_kv P_n M_o P_h N_req", nonnegative=True)
KV_BLOCKS = floor(KV_POOL / (BLOCK * KV_TOKEN))
#: blocks one request reserves for its whole life (TensorRT-LLM "guaranteed no evict")
BLOCKS_PER_REQUEST = ceiling((PROMPT_NEW + OUTPUT) / BLOCK)
#: on-demand allocation (vLLM): a request holds its prompt and, on average, half its
#: output, plus the half-filled last block
MEAN_BLOCKS_PER_REQUEST = (PROMPT_NEW + OUTPUT / 2) / BLOCK + Integer(1) / 2
#: the cached prefix is held once, in whole blocks
PREFIX_BLOCKS = ceiling(PREFIX / BLOCK)
#: requests the pool holds at ``REQUEST_BLOCKS`` blocks each (the workload's mean)
MAX_CONCURRENCY = floor((KV_BLOCKS - PREFIX_BLOCKS) / REQUEST_BLOCKS)


@dataclass(frozen=True)
class Workload:
    """Request classes: prompt and output tokens with their probabilities."""

    prompts: tuple[int, ...]
    outputs: tuple[int, ...]
    weights: tuple[float, ...] = ()

    def __post_init__(self):
        if not self.prompts or len(self.prompts) != len(self.outputs):
            raise PerfmodelError("workload: prompts and outputs must be non-empty and of one length")
        weights = self.weights or (1.0,) * len(self.prompts)
        if len(weights) != len(self.prompts) or any(not w >= 0 for w in weights) or not sum(weights) > 0:
            raise PerfmodelError("workload: weights must be non-negative, one per class, not all zero")
        if any(p < 1 for p in self.prompts) or any(m < 1 for m in self.outputs):
            raise PerfmodelError("workload: prompt and output lengths must be at least 1 token")
        object.__setattr__(self, "weights", tuple(float(w) / sum(weights) for w in weights))

    @classmethod
    def fixed(cls, prompt: int, output: int) -> Workload:
        return cls((int(prompt),), (int(output),))

    @classmethod
    def read_csv(cls, path) -> Workload:
        """A CSV with columns ``prompt``, ``output`` and optionally ``weight`` (or
        ``count``): one row per request or per histogram bin."""
        import pandas as pd

        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise PerfmodelError(f"workload {path}: {exc}") from None
        if not {"prompt", "output"} <= set(frame.columns):
            raise PerfmodelError(f"workload {path}: needs columns prompt and output (has {', '.join(frame.columns)})")
        col = next((c for c in ("weight", "count") if c in frame.columns), None)
        try:
            return cls(tuple(int(v) for v in frame["prompt"]), tuple(int(v) for v in frame["output"]),
                       tuple(float(v) for v in frame[col]) if col else ())
        except (TypeError, ValueError) as exc:
            raise PerfmodelError(f"workload {path}: {exc}") from None

    def mean(self, values) -> float:
        return float(np.dot(self.weights, values))


@dataclass(frozen=True)
class Engine:
    """Scheduler and cache settings, each a named assumption.

    ``chunk_tokens``: token budget per step with chunked prefill (None: a prompt runs
    in a prefill step of its own); ``max_seqs``: running sequences at most;
    ``block_size``: tokens per KV block; ``memory_fraction``: of the GPU's memory the
    engine takes (weights, activations and the KV pool); ``prefix_hit_rate``: fraction
    of each prompt found in the prefix cache (shared by all requests, whole blocks);
    ``kv_policy``: ``reserve`` (a request holds blocks for prompt + output from
    admission) or ``on-demand`` (its mean need)."""

    chunk_tokens: int | None = 8192
    max_seqs: int = 2048
    block_size: int = 16
    memory_fraction: float = 0.9
    memory_of: str = "total"
    prefix_hit_rate: float = 0.0
    kv_policy: str = "reserve"

    def __post_init__(self):
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise PerfmodelError(f"chunk tokens: {self.chunk_tokens} must be at least 1")
        if self.max_seqs < 1 or self.block_size < 1:
            raise PerfmodelError("max sequences and block size must be at least 1")
        if not 0 < self.memory_fraction <= 1:
            raise PerfmodelError(f"memory fraction: {self.memory_fraction} must be in (0, 1]")
        if not 0 <= self.prefix_hit_rate < 1:
            raise PerfmodelError(f"prefix hit rate: {self.prefix_hit_rate} must be in [0, 1)")
        if self.memory_of not in ("total", "free"):
            raise PerfmodelError(f"memory fraction of: {self.memory_of!r} is not one of total, free")
        if self.kv_policy not in ("reserve", "on-demand"):
            raise PerfmodelError(f"kv policy: {self.kv_policy!r} is not one of reserve, on-demand")


# ----------------------------------------------------------------- the deployment


@dataclass
class StepModel:
    """One deployment's step: ``seconds(d, t_d, q, p, t_p)`` of a step with ``d`` decode
    sequences at mean context ``t_d`` and ``p`` prompt tokens of ``q`` sequences after
    ``t_p`` cached ones; ``roofline(...)`` the same as (compute_s, memory_s);
    ``fixed_bytes(budget)`` the weights and the activations of a ``budget``-token step
    and ``memory_bytes`` the memory beside them (per GPU); ``kv_token_bytes``; ``gpus``
    (throughput per GPU divides by it)."""

    seconds: callable
    roofline: callable
    fixed_bytes: callable
    memory_bytes: int
    kv_token_bytes: float
    gpus: int
    name: str
    gpu: str
    tdp_w: float | None = None
    #: the model's learned positions (None: no limit)
    max_positions: int | None = None


def _parts(sc: Scenario, fusion: Fusion, attention: bool):
    """Compiled calibrated seconds of ``sc``'s attention kernels (or all the others),
    and the roofline (compute_s, memory_s) of the same ops, as functions of (b, s, t)."""
    acc = sc.require_accelerator()
    params = cost_params(acc)
    ops = [op for op in sc.table.ops if op.pass_ == "fwd"]
    chosen = [k for k in kernels(ops, fusion) if (k.kind == "attention") == attention]
    expr = sum((kernel_time(k, fusion) * k.repeat for k in chosen), Integer(0))
    fixed = _fixed(sc)
    cal = compile_step(expr, {**fixed, **accelerator_terms(acc, params, gemm_dtype(sc))}, STEP)
    vector = params.vector(gemm_dtype(sc))
    times = [t for t, op in zip(op_times(ops, Roof.of(acc, sc.act_dtype)), ops) if op.core_attention == attention]
    compute = vectorised(sum((t.compute_s for t in times), Integer(0)), fixed, STEP)
    memory = vectorised(sum((t.memory_s for t in times), Integer(0)), fixed, STEP)
    return (lambda b, s, t: cal(b, s, t, *vector)), compute, memory


def single_gpu(sc: Scenario, fusion: Fusion = Fusion()) -> StepModel:
    """The :class:`StepModel` of ``sc``'s model and dtypes on its one accelerator."""
    from perfmodel.memory import memory
    from perfmodel.metrics import kv_cache_bytes_per_token

    acc = sc.require_accelerator()
    params = cost_params(acc)
    pre = sc.but(phase="prefill", seq=1, context=0, batch=1)
    dec = sc.but(phase="decode", seq=1, context=1, batch=1)
    dense, dense_c, dense_m = _parts(pre, fusion, attention=False)
    pattn, pattn_c, pattn_m = _parts(pre, fusion, attention=True)
    dattn, dattn_c, dattn_m = _parts(dec, fusion, attention=True)
    ddense, ddense_c, ddense_m = _parts(dec, fusion, attention=False)
    overhead = params.step_overhead_s(fusion.cuda_graphs)

    def parts(fns, d, t_d, q, p, t_p):
        # all the step's tokens in one pass over the weights: q + d rows of logits (a
        # decode-only step is the decode table's, e.g. MLA's absorbed form)
        dense_f, decode_dense_f, dec_f, pre_f = fns
        if p == 0:
            return float(decode_dense_f(d, 1, t_d) + dec_f(d, 1, t_d)) if d > 0 else 0.0
        total = dense_f(d + q, (d + p) / (d + q), 0) + pre_f(q, p / q, t_p)
        if d > 0:
            total += dec_f(d, 1, t_d)
        return float(total)

    def seconds(d, t_d, q, p, t_p):
        return parts((dense, ddense, dattn, pattn), d, t_d, q, p, t_p) + overhead

    def roofline(d, t_d, q, p, t_p):
        return (parts((dense_c, ddense_c, dattn_c, pattn_c), d, t_d, q, p, t_p),
                parts((dense_m, ddense_m, dattn_m, pattn_m), d, t_d, q, p, t_p))

    weights = value(memory(pre.table)["weights_bytes"], pre.values)
    per_token = float(value(kv_cache_bytes_per_token(sc.arch, dec.options), dec.values))

    def fixed_bytes(budget: int) -> float:
        # a step of ``budget`` tokens (as one-token rows: a budget is not a context)
        act = sc.but(phase="prefill", seq=1, context=0, batch=int(budget))
        return weights + value(memory(act.table)["activation_bytes"], act.values)

    return StepModel(seconds, roofline, fixed_bytes, acc.memory_bytes, per_token, 1, sc.arch.name, acc.name, acc.tdp_w,
                     sc.arch.max_position_embeddings)


# ----------------------------------------------------------------- capacity


def kv_capacity(step: StepModel, work: Workload, engine: Engine) -> dict:
    """Paged KV: the pool, its blocks, blocks per request and the largest concurrency."""
    budget = engine.chunk_tokens or max(work.prompts)
    fixed = step.fixed_bytes(budget)
    if engine.memory_of == "free":
        pool = engine.memory_fraction * (step.memory_bytes - fixed)
    else:
        pool = engine.memory_fraction * step.memory_bytes - fixed
    prefix = prefix_tokens(work, engine)
    per_class = BLOCKS_PER_REQUEST if engine.kv_policy == "reserve" else MEAN_BLOCKS_PER_REQUEST
    per_request = work.mean([float(value(per_class, {PROMPT_NEW: int(p - h), OUTPUT: m, BLOCK: engine.block_size}))
                             for p, h, m in zip(work.prompts, prefix, work.outputs)])
    values = {KV_POOL: Rational(int(max(pool, 0))), KV_TOKEN: Rational(str(step.kv_token_bytes)), BLOCK: engine.block_size,
              PREFIX: int(prefix.max()), REQUEST_BLOCKS: Rational(str(per_request))}
    blocks = int(value(KV_BLOCKS, values))
    limit = max(0, int(value(MAX_CONCURRENCY, values)))
    return {"fixed_bytes": fixed, "kv_shared_blocks": int(value(PREFIX_BLOCKS, values)),
            "kv_pool_bytes": pool, "kv_block_bytes": engine.block_size * step.kv_token_bytes, "kv_blocks": blocks,
            "kv_blocks_per_request": per_request, "kv_max_concurrency": limit,
            "max_concurrency": min(limit, engine.max_seqs)}


def prefix_tokens(work: Workload, engine: Engine) -> np.ndarray:
    """Cached prompt tokens per class: the hit rate's share, in whole blocks, and never
    the whole prompt (the last token is always computed)."""
    hit = np.floor(np.array(work.prompts) * engine.prefix_hit_rate / engine.block_size) * engine.block_size
    return np.minimum(hit, np.array(work.prompts) - 1)


# ----------------------------------------------------------------- the steady state


def steady_state(step: StepModel, work: Workload, engine: Engine, concurrency: float) -> dict:
    """The closed-loop steady state at ``concurrency`` requests in the system (see the
    module docstring): throughput ``x`` (requests/s), the decode batch ``d``, latencies
    per class, and the step mix (``mix``: each kind of step's arguments and steps per
    second). ``d`` solves ``d = C − X(d)·E[ttft(d)]`` (the requests not prefilling are
    decoding) by bisection."""
    if not concurrency > 0:
        raise PerfmodelError(f"concurrency: {concurrency} must be positive")
    prompts, outputs = np.array(work.prompts, float), np.array(work.outputs, float)
    cached = prefix_tokens(work, engine)
    new = prompts - cached
    decode_tokens = work.mean(outputs - 1)
    # decode context, weighted by the steps spent at it: E[(M−1)(N + M/2)] / E[M−1]
    t_dec = work.mean((outputs - 1) * (prompts + outputs / 2)) / decode_tokens if decode_tokens > 0 else 0.0
    mean_new = work.mean(new)
    C = float(concurrency)

    def at(d: float) -> dict:
        if engine.chunk_tokens is not None:
            room = max(engine.chunk_tokens - d, 1.0)
            # prompt tokens a prefill step carries: the budget left, or all prompts waiting
            chunk = min(room, max(C - d, 1.0) * mean_new)
            q = chunk / mean_new
            # a chunk runs against its prompt's cached prefix plus, on average, half the rest
            t_pre = work.mean(cached + np.maximum(new - chunk, 0) / 2)
            t_pf = float(step.seconds(d, t_dec, q, chunk, t_pre))
            t_d = float(step.seconds(d, t_dec, 0, 0, 0)) if d > 0 else t_pf
            # X·E[M−1] = d/T̄ and X·E[P] = f·chunk/T̄
            f = min(d * mean_new / (decode_tokens * chunk), 1.0) if decode_tokens > 0 else 1.0
            mean_step = f * t_pf + (1 - f) * t_d
            x = f * chunk / mean_new / mean_step
            mix = [((d, t_dec, q, chunk, t_pre), f / mean_step), ((d, t_dec, 0, 0, 0), (1 - f) / mean_step)]
            # a prompt rides in steps that carry at least its own tokens (up to the budget)
            own = np.array([float(step.seconds(d, t_dec, max(q, 1.0), c, h + max(n - c, 0) / 2)) if c > chunk else t_pf
                            for n, h, c in zip(new, cached, np.minimum(room, new))])
            return {"x": x, "tpot": mean_step, "ttft": np.ceil(new / room) * own, "f": f, "chunk": chunk,
                    "t_prefill_step": t_pf, "t_decode_step": t_d, "mean_step": mean_step, "mix": mix}
        tau = np.array([float(step.seconds(0, 0, 1, p, c)) for p, c in zip(new, cached)])
        t_d = float(step.seconds(d, t_dec, 0, 0, 0)) if d > 0 else 0.0
        x = 1 / (work.mean(tau) + decode_tokens * t_d / d) if d > 0 else (1 / work.mean(tau) if decode_tokens == 0 else 0.0)
        busy = x * work.mean(tau)
        # decode steps stall for the prompts of the requests that arrive meanwhile
        tpot = t_d / max(1 - busy, 1e-12)
        mix = [((0, 0, 1, mean_new, work.mean(cached)), x), ((d, t_dec, 0, 0, 0), x * decode_tokens / d if d > 0 else 0.0)]
        return {"x": x, "tpot": tpot, "ttft": tau + t_d / 2, "f": busy, "chunk": mean_new, "t_prefill_step": work.mean(tau),
                "t_decode_step": t_d, "mean_step": None, "mix": mix}

    def excess(d: float) -> float:
        s = at(d)
        return C - s["x"] * work.mean(s["ttft"]) - d

    if decode_tokens == 0:
        d = 0.0
    else:
        hi = C
        if engine.chunk_tokens is not None:
            # above this decode batch prompts cannot keep up (every step carries a full chunk)
            hi = min(hi, decode_tokens * max(engine.chunk_tokens, 1) / (mean_new + decode_tokens))
            hi = min(hi, C)
        lo = 0.0
        if excess(hi) > 0:
            lo = hi
        while hi - lo > 1e-9 * max(hi, 1.0):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
        d = lo if lo > 0 else hi
    s = at(d)
    # when prompts cannot keep up, requests queue for the prefill slot: Little's law gives the wait
    wait = max(C / s["x"] - work.mean(s["ttft"]) - decode_tokens * s["tpot"], 0.0)
    ttft = s["ttft"] + wait
    return {**s, "d": d, "t_dec": t_dec, "wait": wait, "ttft": ttft, "e2e": ttft + (outputs - 1) * s["tpot"],
            "cached": cached, "new": new}


# ----------------------------------------------------------------- cost and energy

PRICE, GPUS, SHARE, RATE = _symbols("p_gpu_h n_gpu phi r_tok", positive=True)
#: dollars per million tokens of a kind: the deployment's cost per second times the
#: share of step time that kind of work takes, over its tokens per second
USD_PER_MILLION_TOKENS = PRICE * GPUS * SHARE / 3600 / RATE * 10**6


def _quantile(values, weights, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(np.asarray(weights)[order])
    return float(np.asarray(values)[order][np.searchsorted(cum, q - 1e-12)])


def _throughput(step, work, engine, concurrency):
    return steady_state(step, work, engine, concurrency)["x"]


def concurrency_for_rate(step: StepModel, work: Workload, engine: Engine, rate: float, limit: int) -> float:
    """The running concurrency whose closed-loop throughput is ``rate`` requests/s."""
    top = _throughput(step, work, engine, limit)
    if rate >= top:
        raise PerfmodelError(f"rate: {rate:g} requests/s is at or above the saturated throughput "
                             f"{top:.4g} requests/s (at concurrency {limit}); no steady state")
    lo, hi = 0.0, float(limit)
    while hi - lo > 1e-7 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _throughput(step, work, engine, mid) < rate else (lo, mid)
    return hi


def serve(step: StepModel, work: Workload, engine: Engine, *, concurrency: float | None = None,
          rate: float | None = None, gpu_hour_usd: float | None = None, price_source: str = "") -> dict:
    """One serving row: the steady state at ``concurrency`` (closed loop), at an arrival
    ``rate`` (open loop, M/D/1 admission wait), or — neither — saturated at the largest
    concurrency that fits; with throughput, latencies, KV capacity, what binds, cost
    (``gpu_hour_usd`` per GPU) and an energy estimate."""
    if concurrency is not None and rate is not None:
        raise PerfmodelError("give --concurrency or --rate, not both")
    if rate is not None and not rate > 0:
        raise PerfmodelError(f"rate: {rate} must be positive (requests/s)")
    if gpu_hour_usd is not None and not gpu_hour_usd >= 0:
        raise PerfmodelError(f"gpu hour price: {gpu_hour_usd} must be non-negative")
    longest = max(p + m for p, m in zip(work.prompts, work.outputs))
    if step.max_positions is not None and longest > step.max_positions:
        raise PerfmodelError(f"prompt + output = {longest} exceeds {step.name}'s {step.max_positions} positions")
    cap = kv_capacity(step, work, engine)
    limit = cap["max_concurrency"]
    if limit < 1:
        raise PerfmodelError(f"{step.name} on {step.gpu}: no request fits: KV pool {cap['kv_pool_bytes'] / 2**30:.1f} GiB "
                             f"after weights and activations holds {cap['kv_blocks']} blocks, a request needs "
                             f"{cap['kv_blocks_per_request']:.0f}")
    wait = 0.0
    if rate is not None:
        running = concurrency_for_rate(step, work, engine, rate, limit)
        mode = "rate"
    elif concurrency is not None:
        running, mode = float(concurrency), "concurrency"
    else:
        running, mode = float(limit), "saturated"
    s = steady_state(step, work, engine, running)
    x = s["x"]
    if rate is not None:
        top = _throughput(step, work, engine, limit)
        rho = rate / top
        wait = rho / top / (2 * (1 - rho))  # M/D/1: ρ·S/(2(1−ρ)), S = 1/X_max
    prompts, outputs = np.array(work.prompts, float), np.array(work.outputs, float)
    ttft, e2e = s["ttft"] + wait, s["e2e"] + wait
    in_system = x * work.mean(e2e)
    row = {"mode": mode, "concurrency": in_system, "running": running, "max_concurrency": limit,
           "requests_per_s": x, "input_tokens_per_s": x * work.mean(prompts), "output_tokens_per_s": x * work.mean(outputs)}
    row["total_tokens_per_s"] = row["input_tokens_per_s"] + row["output_tokens_per_s"]
    for key in ("requests_per_s", "output_tokens_per_s", "total_tokens_per_s"):
        row[f"{key}_per_gpu"] = row[key] / step.gpus
    row.update({"ttft_s": work.mean(ttft), "tpot_s": s["tpot"], "e2e_latency_s": work.mean(e2e),
                "queue_wait_s": s["wait"] + wait})
    if len(work.prompts) > 1:
        for name, v in (("ttft", ttft), ("e2e_latency", e2e)):
            row[f"{name}_p50_s"] = _quantile(v, work.weights, 0.5)
            row[f"{name}_p90_s"] = _quantile(v, work.weights, 0.9)
    # roofline seconds of compute and of memory traffic per second of serving
    f = s["f"]
    compute_u = sum(step.roofline(*args)[0] * n for args, n in s["mix"])
    memory_u = sum(step.roofline(*args)[1] * n for args, n in s["mix"])
    step_bound = "compute" if compute_u >= memory_u else "bandwidth"
    if running >= limit and limit == cap["kv_max_concurrency"]:
        binds = "kv_capacity"
    elif running >= limit:
        binds = "max_seqs"
    elif engine.chunk_tokens is not None and f >= 1 - 1e-9 and s["chunk"] >= engine.chunk_tokens - s["d"] - 1e-6:
        binds = "token_budget"
    else:
        binds = step_bound
    # the share of step time prompts take: chunks' extra time over a decode-only step
    if engine.chunk_tokens is not None:
        prefill_share = f * (s["t_prefill_step"] - s["t_decode_step"]) / s["mean_step"] if s["d"] > 0 else 1.0
    else:
        prefill_share = f
    prefill_share = min(max(prefill_share, 0.0), 1.0)
    row.update({"binds": binds, "step_bound": step_bound, "decode_batch": s["d"], "prefill_chunk_tokens": s["chunk"],
                "prefill_step_fraction": f, "prefill_time_share": prefill_share,
                "decode_step_s": s["t_decode_step"], "prefill_step_s": s["t_prefill_step"],
                "compute_utilization": compute_u, "bandwidth_utilization": memory_u,
                **{k: v for k, v in cap.items() if k != "fixed_bytes"}})
    # memory: weights, a step's activations and the KV blocks in use, against what the
    # engine may use (the same with every block of the pool)
    used = running * cap["kv_blocks_per_request"] + cap["kv_shared_blocks"]
    row["memory_needed_bytes"] = cap["fixed_bytes"] + used * cap["kv_block_bytes"]
    row["capacity_bytes"] = cap["fixed_bytes"] + cap["kv_blocks"] * cap["kv_block_bytes"]
    row["fits"] = bool(row["memory_needed_bytes"] <= row["capacity_bytes"])
    if gpu_hour_usd is not None:
        def usd(share, tokens_per_s):
            values = {PRICE: gpu_hour_usd, GPUS: step.gpus, SHARE: share, RATE: tokens_per_s}
            return float(value(USD_PER_MILLION_TOKENS, values)) if share > 0 else 0.0

        row.update({"gpu_hour_usd": gpu_hour_usd, "price_source": price_source,
                    "usd_per_million_input_tokens": usd(prefill_share, row["input_tokens_per_s"]),
                    "usd_per_million_output_tokens": usd(1 - prefill_share, row["output_tokens_per_s"]),
                    "usd_per_million_tokens": usd(1, row["total_tokens_per_s"])})
    if step.tdp_w:
        # estimate: board power = TDP × the busier unit's roofline utilization
        power = step.tdp_w * min(max(compute_u, memory_u), 1.0)
        row["power_w_estimate"] = power
        row["j_per_output_token_estimate"] = power * step.gpus / row["output_tokens_per_s"]
        row["j_per_token_estimate"] = power * step.gpus / row["total_tokens_per_s"]
    return row


def report(step: StepModel, work: Workload, engine: Engine, **kw):
    """:func:`serve` (or :func:`max_rate`, given ``ttft_s``/``tpot_s`` limits) as a
    one-row DataFrame, labelled."""
    import pandas as pd

    labels = {"model": step.name, "gpu": step.gpu, "gpus": step.gpus, "prompt": work.mean(work.prompts),
              "output": work.mean(work.outputs), "chunk_tokens": engine.chunk_tokens, "prefix_hit_rate": engine.prefix_hit_rate}
    run = max_rate if kw.get("ttft_s") is not None or kw.get("tpot_s") is not None else serve
    kw = {k: v for k, v in kw.items() if run is max_rate or k not in ("ttft_s", "tpot_s")}
    return pd.DataFrame([{**labels, **run(step, work, engine, **kw)}])


def curve(step: StepModel, work: Workload, engine: Engine, points: int = 16, **kw):
    """The latency–throughput curve: :func:`report` at concurrencies from 1 to the
    largest that fits, doubling (and that largest one)."""
    import pandas as pd

    limit = kv_capacity(step, work, engine)["max_concurrency"]
    levels = sorted({min(2 ** i, limit) for i in range(points) if 2 ** i <= limit} | {limit})
    return pd.concat([report(step, work, engine, concurrency=c, **kw) for c in levels], ignore_index=True)


def max_rate(step: StepModel, work: Workload, engine: Engine, *, ttft_s: float | None = None,
             tpot_s: float | None = None, **kw) -> dict:
    """:func:`serve` at the largest arrival rate whose TTFT (p50 with a length
    distribution, else the mean) and TPOT stay within the limits given."""
    if ttft_s is None and tpot_s is None:
        raise PerfmodelError("give a TTFT or a TPOT limit")
    for name, v in (("ttft limit", ttft_s), ("tpot limit", tpot_s)):
        if v is not None and not v > 0:
            raise PerfmodelError(f"{name}: {v} must be positive (seconds)")
    limit = kv_capacity(step, work, engine)["max_concurrency"]
    top = _throughput(step, work, engine, limit) if limit >= 1 else 0.0

    def meets(row):
        ttft = row.get("ttft_p50_s", row["ttft_s"])
        return (ttft_s is None or ttft <= ttft_s) and (tpot_s is None or row["tpot_s"] <= tpot_s)

    lo, hi = 0.0, top
    while hi - lo > 1e-5 * top:
        mid = (lo + hi) / 2
        if mid > 0 and meets(serve(step, work, engine, rate=mid, **kw)):
            lo = mid
        else:
            hi = mid
    if lo <= 0:
        first = serve(step, work, engine, concurrency=1, **kw)
        raise PerfmodelError(f"no rate meets the limits: a lone request has TTFT {first['ttft_s']:.4g} s and TPOT {first['tpot_s']:.4g} s")
    return {**serve(step, work, engine, rate=lo, **kw), "ttft_limit_s": ttft_s, "tpot_limit_s": tpot_s}
