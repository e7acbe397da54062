"""The queries behind every command, for notebooks too: each returns a pandas
DataFrame of numbers with units in the column names (formatting happens at export).
The queries behind the quick commands build :class:`~perfmodel.rows.Rows` (``params.rows``,
``kv_cache.rows``, ``roofline_report.rows``, ``balance.rows``), so the CLI runs them
without importing pandas; their public form is the DataFrame of those rows.

    >>> import perfmodel as pm
    >>> arch = pm.load_model("llama-3-8b")
    >>> pm.params(arch)
    >>> sc = pm.Scenario(arch, pm.Options(phase="decode"), batch=8, context=4096)
    >>> pm.flops(sc, by="operator")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sympy import Expr, Integer, Symbol, latex

from perfmodel import metrics
from perfmodel import symbols as S
from perfmodel.architecture import Architecture, LatentAttention
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import bindings, number, partial, value
from perfmodel.hf_config import family_of
from perfmodel.kernels import AttentionCall, predict
from perfmodel.memory import memory
from perfmodel.ops.base import tokens
from perfmodel.presets import registry
from perfmodel.quantities import lookup
from perfmodel.rows import Rows, column_sum, framed
from perfmodel.roofline import (
    Efficiency,
    balance_batch,
    bound,
    context_limit,
    step_terms,
)
from perfmodel.scenario import Scenario
from perfmodel.table import build
from perfmodel.units import GIB

if TYPE_CHECKING:
    import pandas as pd


def _frame(rows: list[dict]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows)


def models() -> pd.DataFrame:
    """The shipped presets with their family and where the config came from."""
    rows = [
        {
            "name": name,
            "family": family_of(rec["family"]),
            "model_type": rec["family"],
            "hf_repo": rec["hf_repo"],
            "total_params": rec["total_params"],
            "source": rec["source"],
        }
        for name, rec in registry().items()
    ]
    return _frame(rows)


def _row(values: dict, exprs: dict[str, Expr]) -> dict:
    return {name: value(expr, values) for name, expr in exprs.items()}


@framed
def params(arch: Architecture) -> Rows:
    """Exact parameter counts: total, embedding, non-embedding, active per token."""
    counts = metrics.params(build(arch))
    counts["active_non_embedding_params"] = counts["active_params"] - counts["embedding_params"]
    return Rows([{"model": arch.name, **_row(bindings(arch), counts)}])


def shapes(arch: Architecture) -> pd.DataFrame:
    """Every weight tensor: its shape, elements, and how many layers have it."""
    values = bindings(arch)
    rows = []
    for t in build(arch).tensors:
        numel = value(t.numel, values)
        count = value(t.repeat, values)
        rows.append(
            {
                "tensor": t.name,
                "block": t.block,
                "shape": [value(x, values) for x in t.shape],
                "shape_symbolic": " × ".join(str(x) for x in t.shape),
                "params": numel,
                "count": count,
                "total_params": numel * count,
            }
        )
    return _frame(rows)


@framed
def kv_cache(sc: Scenario) -> Rows:
    """KV-cache bytes per token, and for ``batch`` sequences holding the cache as it
    stands after the scenario's step (``tokens_cached`` = ``context + seq`` tokens each,
    the ``kv_cache_bytes`` quantity ``formula`` and ``sweep`` evaluate)."""
    per_token = metrics.kv_cache_bytes_per_token(sc.arch, sc.options)
    nbytes = value(lookup("kv_cache_bytes").build(sc), sc.values)
    row = {
        "model": sc.arch.name,
        "phase": sc.phase,
        "seq": sc.seq_tokens,
        "context": sc.context_tokens,
        "tokens_cached": sc.tokens_seen,
        "batch": sc.batch,
        "kv_dtype": sc.kv_dtype,
        "kv_cache_bytes_per_token": value(per_token, sc.values),
        "kv_cache_bytes": nbytes,
        "kv_cache_gib": nbytes / GIB,
    }
    if sc.arch.kind == "encoder-decoder":
        # the self-attention cache grows with the target; the cross-attention cache is fixed by the source
        cross = metrics.cross_kv_cache_bytes(sc.arch)
        row["source_len"] = sc.source_tokens
        row["self_kv_cache_bytes"] = value(metrics.self_kv_cache_bytes(sc.arch, sc.options, S.t + S.s), sc.values)
        row["cross_kv_cache_bytes"] = value(cross, sc.values)
        row["cross_kv_cache_bytes_per_source_token"] = value(cross / (S.b * S.s_enc), sc.values)
    return Rows([row])


def _aggregate(sc: Scenario, by: str) -> list[tuple[dict, list]]:
    """Rows' labels and the ops (with layer counts) they sum: one per op, per layer kind, or all."""
    ops = sc.table.ops
    if by == "total":
        return [({}, [(op, True) for op in ops])]
    if by == "operator":
        return [({"operator": op.name, "group": op.group, "pass": op.pass_, "layers": value(op.repeat, sc.values)}, [(op, True)]) for op in ops]
    if by == "layer":
        groups: dict[str, list] = {}
        for op in ops:
            groups.setdefault(op.group, []).append(op)
        return [
            ({"group": g, "layers": value(members[0].repeat, sc.values) if g != "model" else 1}, [(op, g == "model") for op in members])
            for g, members in groups.items()
        ]
    raise PerfmodelError(f"by: {by!r} is not one of total, layer, operator")


def _sum(ops_with_repeat, field: str) -> Expr:
    return sum(((getattr(op, field) * (op.repeat if repeat else 1)) for op, repeat in ops_with_repeat), Integer(0))


def _step_labels(sc: Scenario) -> dict:
    labels = {"model": sc.arch.name, "phase": sc.phase, "batch": sc.batch, "seq": sc.seq_tokens, "context": sc.context_tokens}
    if sc.source_tokens is not None:
        labels["source_len"] = sc.source_tokens
    return labels


def flops(sc: Scenario, by: str = "total") -> pd.DataFrame:
    """FLOPs (all, matmul, elementwise), bytes by kind and intensity; ``--by layer``
    gives one layer of each kind, ``operator`` each op over all its layers."""
    rows = []
    for labels, members in _aggregate(sc, by):
        sums = {f: value(_sum(members, f), sc.values) for f in metrics.OP_FIELDS}
        sums["arithmetic_intensity"] = sums["flops"] / sums["bytes"] if sums["bytes"] else float("inf")
        rows.append({**labels, **sums})
    frame = _frame(rows)
    if by == "total":
        frame.insert(0, "model", sc.arch.name)
        extra = _training_estimates(sc) if sc.options.training else {}
        n_tokens = value(tokens(), sc.values)
        frame["tokens"] = n_tokens
        frame["flops_per_token"] = frame["flops"] / n_tokens
        for k, v in extra.items():
            frame[k] = v
    return frame


def _training_estimates(sc: Scenario) -> dict:
    """The standard estimates beside the exact count: ``6·N·tokens`` (Kaplan et al. 2020;
    N = the parameters used in matmuls: the active non-embedding ones plus the output
    head, tied or not, since the lookup tables do no matmul) and PaLM's
    ``(6N + 12·L·H·Q·T)·tokens`` (Chowdhery et al. 2022, App. B; non-causal)."""
    counts = metrics.params(sc.table)
    n = counts["active_params"] - counts["embedding_params"] + S.V * S.d
    n_tokens = tokens()
    heads_dims = sum(
        (g.repeat * _attention_width(g.layer.attention) for g in sc.arch.groups if g.layer.attention), Integer(0)
    )
    six_n = 6 * n * n_tokens
    palm = six_n + 12 * heads_dims * S.s * n_tokens
    return {"flops_6n": value(six_n, sc.values), "flops_palm": value(palm, sc.values)}


def _attention_width(att) -> Expr:
    """H·Q of the PaLM formula: query heads times the head size used for scores."""
    if isinstance(att, LatentAttention):
        return S.n_h * (S.d_nope + S.d_rope + S.d_v) / 2
    return S.n_h * S.d_h


def memory_report(sc: Scenario) -> pd.DataFrame:
    """Weights, KV cache, activations, gradients, optimizer states; with an accelerator,
    whether it fits and the largest batch (and context) that does.

    Inference is labelled ``phase`` infer with ``context`` = the tokens each sequence
    holds (``t + s``) and ``chunk`` = the prefill chunk ``s`` whose working set counts.
    ``max_context``: the most tokens a sequence can hold at this batch, the chunk growing
    with it when it is the whole context (``t = 0``), else fixed; capped at the model's
    context limit (``max_context_limit`` says which bound it hit)."""
    parts = memory(sc.table)
    if sc.options.training:
        labels = _step_labels(sc)
    else:
        labels = {"model": sc.arch.name, "phase": "infer", "batch": sc.batch, "context": sc.tokens_seen, "chunk": sc.seq_tokens}
    row = {**labels, **_row(sc.values, parts)}
    row["total_gib"] = row["total_bytes"] / GIB
    acc = sc.accelerator
    if acc is not None:
        total = parts["total_bytes"]
        row["capacity_bytes"] = acc.memory_bytes
        row["fits"] = row["total_bytes"] <= acc.memory_bytes
        row["max_batch"] = _largest(total, sc.values, S.b, acc.memory_bytes)
        if not sc.options.training and sc.arch.kind != "encoder":  # an encoder-only model keeps no context
            row["max_context"], row["max_context_limit"] = _max_context(sc, total, acc.memory_bytes)
    return _frame([row])


def _max_context(sc: Scenario, total: Expr, capacity: int) -> tuple[int | None, str]:
    """(the most tokens per sequence that fit at this batch, what bounds it)."""
    cap = sc.arch.context_limit
    high = cap or 10**9
    if sc.context_tokens == 0:  # the chunk is the whole context: grow both together
        values = {**sc.values, S.t: Integer(0)}
        found = _largest(total, values, S.s, capacity, high=high)
        held = found
    else:  # a fixed chunk after a growing cache
        found = _largest(total, sc.values, S.t, capacity, low=0, high=max(0, high - sc.seq_tokens))
        held = None if found is None else (found + sc.seq_tokens if found >= 0 else 0)
    if held is None:
        return (cap, "max_position_embeddings") if cap else (None, "none up to 10**9 tokens")
    return held, "memory"
def _largest(expr: Expr, values: dict, symbol: Symbol, capacity: int, *, low: int = 1, high: int = 10**9) -> int | None:
    """The largest integer ``symbol`` with ``expr <= capacity`` (expr grows with it);
    ``low - 1`` if none fits, None if all up to ``high`` do. Bisects with exact
    evaluation (the expression has one symbol left: some 30 cheap steps, no compiling)."""
    f = partial(expr, values, free=(symbol,))

    def fits(x: int) -> bool:
        return f.xreplace({symbol: Integer(x)}) <= capacity

    if not fits(low):
        return low - 1
    if fits(high):
        return None
    lo, hi = low, high
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


@framed
def roofline_report(sc: Scenario, by: str = "operator") -> Rows:
    """Per operator (or layer, or total): FLOPs, bytes, compute and memory time, the
    roofline time and what bounds it; ``expected_time_s`` applies the efficiencies."""
    pure, expected = sc.roof(), sc.roof(expected=True)
    rows = []
    for labels, members in _aggregate(sc, by):
        # counts stay exact integers; times are floats
        sums = {"flops": 0, "bytes": 0, **dict.fromkeys(("compute_time_s", "memory_time_s", "time_s", "expected_time_s"), 0.0)}
        for op, repeat in members:
            times = {}
            for key, roof in (("", pure), ("expected_", expected)):
                c = value(roof.compute_time(op.matmul_flops, op.vector_flops), sc.values)
                m = value(roof.memory_time(op.bytes), sc.values)
                times[key] = (c, m)
            layers = value(op.repeat, sc.values) if repeat else 1
            sums["flops"] += value(op.flops, sc.values) * layers
            sums["bytes"] += value(op.bytes, sc.values) * layers
            sums["compute_time_s"] += times[""][0] * layers
            sums["memory_time_s"] += times[""][1] * layers
            sums["time_s"] += max(times[""]) * layers
            sums["expected_time_s"] += max(times["expected_"]) * layers
        sums["arithmetic_intensity"] = sums["flops"] / sums["bytes"] if sums["bytes"] else float("inf")
        sums["bound"] = bound(sums["compute_time_s"], sums["memory_time_s"])
        rows.append({**labels, **sums})
    if by == "total":
        return Rows([_derived(sc, rows[0])])
    frame = Rows(rows)
    if by == "operator":
        total = column_sum(frame["time_s"])
        frame["share_of_time"] = [t / total for t in frame["time_s"]]
    return frame


def _derived(sc: Scenario, sums: dict) -> dict:
    """The step's row: its labels, the sums, then tokens/s, time to first token, MFU,
    the ridge point."""
    roof = sc.roof()
    n_tokens = value(tokens(), sc.values)
    row = {**_step_labels(sc), "gpu": sc.accelerator.name}
    if not sc.options.training and getattr(sc.accelerator, "cost", None) is not None:
        # the default prediction: the calibrated cost model (time_s stays the pure bound)
        from perfmodel.request import calibrated_seconds

        calibrated = calibrated_seconds(sc)
        for key, v in sums.items():
            if key == "time_s":
                row["calibrated_time_s"] = calibrated
            row[key] = v
    else:
        calibrated = None
        row.update(sums)
    row["tokens_per_s"] = n_tokens / row["time_s"]
    row["expected_tokens_per_s"] = n_tokens / row["expected_time_s"]
    if calibrated is not None:
        row["calibrated_tokens_per_s"] = n_tokens / calibrated
    if sc.phase == "decode":
        row["time_per_token_s"] = row["time_s"] / sc.seq_tokens
    if sc.phase == "prefill":
        row["ttft_s"] = row["time_s"]
    if sc.options.training:
        model_flops = value(metrics.totals([op for op in sc.table.ops if op.pass_ in ("fwd", "bwd")], ("matmul_flops",))["matmul_flops"], sc.values)
        peak = number(roof.peak)
        row["mfu"] = model_flops / (row["time_s"] * peak)
        row["expected_mfu"] = model_flops / (row["expected_time_s"] * peak)
    row["ridge_point_flop_per_byte"] = number(roof.ridge_point)
    return row


@framed
def balance(sc: Scenario, by: str = "total") -> Rows:
    """The decode batch at which compute time equals memory time (the whole step, or
    per operator), whether it fits, and up to which context it exists at all."""
    times = sc.op_times()
    values = {k: v for k, v in sc.values.items() if k != S.b}
    if by == "operator":
        rows = []
        for t in times:
            if t.op.pass_ != "fwd":
                continue
            result = balance_batch(t.compute_s, t.memory_s, values)
            rows.append({"operator": t.op.name, "group": t.op.group, "balance_batch": _num(result.batch), "reason": result.reason})
        return Rows(rows)
    if by != "total":
        raise PerfmodelError(f"by: {by!r} is not one of total, operator")
    compute, mem = step_terms(times)
    whole = balance_batch(compute, mem, values)
    roof = sc.roof()
    weight_ops = [op for op in sc.table.ops if op.weight_bytes != 0]
    textbook = balance_batch(
        sum((roof.compute_time(metrics.op_total(op, "matmul_flops"), Integer(0)) for op in weight_ops), Integer(0)),
        sum((roof.memory_time(metrics.op_total(op, "weight_bytes")) for op in weight_ops), Integer(0)),
        values,
    )
    limit = context_limit(compute, mem, values)
    reason = whole.reason
    if whole.exists and number(whole.batch) < 1:  # no whole batch is memory-bound
        reason = f"compute-bound at every batch: compute and memory time meet at batch {number(whole.batch):.3g}, below one sequence"
        whole = type(whole)(None, reason)
    if not whole.exists and limit is not None:
        reason += (
            f"; a balance point exists only at contexts up to {limit} tokens" if limit >= 0
            else "; none exists at any context (even 0)"
        )
    row = {
        **{k: v for k, v in _step_labels(sc).items() if k != "batch"},
        "gpu": sc.accelerator.name,
        "weight_dtype": sc.weight_dtype,
        "kv_dtype": sc.kv_dtype,
        "balance_batch": _num(whole.batch),
        "balance_batch_exact": None if whole.batch is None else str(whole.batch),
        "reason": reason,
        "balance_batch_weights_only": _num(textbook.batch),
        "max_context_with_balance": limit,
        "ridge_point_flop_per_byte": number(roof.ridge_point),
    }
    if whole.exists:
        at = sc.but(batch=max(1, int(number(whole.batch))))
        need = value(memory(at.table)["total_bytes"], at.values)
        row["memory_at_balance_bytes"] = need
        row["fits_at_balance"] = need <= sc.accelerator.memory_bytes
    else:
        row["memory_at_balance_bytes"] = None
        row["fits_at_balance"] = None
    row["max_batch"] = _largest(memory(sc.table)["total_bytes"], sc.values, S.b, sc.accelerator.memory_bytes)
    return Rows([row])


def _num(x) -> float | None:
    return None if x is None else number(x)


def formula(name: str, sc: Scenario, *, as_latex: bool = False) -> pd.DataFrame:
    """A quantity's expression (the phase's fixed symbols substituted), its value for
    the scenario, and the meaning of each symbol in it."""
    q = lookup(name)
    if q.needs_gpu:
        sc.require_accelerator()
    expr = q.build(sc).xreplace(sc.phase_values)
    shown = latex(expr) if as_latex else str(expr)
    legend = "; ".join(f"{s.name}: {S.describe(s).description}" for s in sorted(expr.free_symbols, key=str))
    frame = _frame(
        [{"quantity": q.name, "unit": q.unit, "expression": shown, "value": value(expr, sc.values), "symbols": legend}]
    )
    frame.attrs["latex_columns"] = ["expression"] if as_latex else []
    return frame



def call_seconds(call: AttentionCall, acc) -> float:
    """A fused attention call's seconds by the calibrated cost model (its kernels timed
    alone: no gap between kernels); NaN for a naive call or a part without cost terms."""
    from perfmodel import symbols as S
    from perfmodel.cost import PARAMETERS, Fusion, accelerator_terms, step_seconds
    from perfmodel.request import nsimplify_rate

    params = getattr(acc, "cost", None)
    if params is None or call.impl != "fused":
        return float("nan")
    terms = {**accelerator_terms(acc, params, call.dtype, attention=call.dtype), **dict(zip(PARAMETERS, params.vector(call.dtype))), S.t_g: 0}
    values = {**call.values, **{k: nsimplify_rate(v) for k, v in terms.items()}}
    ops = [op for launch in call.kernels() for op in launch]
    return float(number(step_seconds(ops, values, Fusion())))


def attention_call(acc, *, compute_efficiency=None, bandwidth_efficiency=None, **call) -> pd.DataFrame:
    """One attention kernel call on ``acc``: FLOPs (FlashAttention convention), bytes, the
    calibrated cost model's time (the default prediction), the pure roofline time (the
    bound, ``predicted_s``) and the time with the catalog's flat efficiencies."""
    call = AttentionCall(**call)
    default = Efficiency.catalog_default(acc)
    efficiency = Efficiency(
        default.compute if compute_efficiency is None else compute_efficiency,
        default.bandwidth if bandwidth_efficiency is None else bandwidth_efficiency,
    )
    pure, expected = predict(call, acc), predict(call, acc, efficiency)
    calibrated = call_seconds(call, acc)
    row = {
        "gpu": acc.name,
        "batch": call.batch,
        "heads": call.heads,
        "kv_heads": call.kv_heads,
        "head_dim": call.head_dim,
        "seq_q": call.seq_q,
        "seq_kv": call.seq_kv,
        "causal": call.causal,
        "dtype": call.dtype,
        "pass": call.pass_,
        "flops": pure["flops"],
        "vector_flops": pure["vector_flops"],
        "bytes": pure["bytes"],
        "calibrated_s": calibrated,
        "calibrated_tflops_per_s": pure["flops"] / calibrated / 1e12 if calibrated == calibrated else float("nan"),
        "predicted_s": pure["predicted_s"],
        "predicted_tflops_per_s": pure["predicted_tflops_per_s"],
        "bound": pure["bound"],
        "expected_s": expected["predicted_s"],
        "expected_tflops_per_s": expected["predicted_tflops_per_s"],
    }
    return _frame([row])
