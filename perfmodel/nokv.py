"""Generation without a KV cache: every output token recomputes the whole prefix.

After the prompt's prefill (which gives the first token in both modes), token ``i + 1``
(``i = 1 … M−1``) costs, with a cache, one decode step of 1 new token against
``N + i − 1`` cached ones; without one, a prefill of all ``N + i`` tokens. Summed over
the output, the projections' FLOPs grow as ``Σ (N + i)`` — O(M·N + M²) — instead of
``N + M``, and attention's as ``Σ (N + i)²/2`` instead of ``Σ (N + i)``; the weights
are read once per step either way, so bytes grow far less than FLOPs and the time
ratio sits between the two as the steps turn compute-bound.
"""

from __future__ import annotations

import numpy as np

from perfmodel.cost import Fusion
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import vectorised
from perfmodel.metrics import totals
from perfmodel.request import STEP, _fixed, cost_params, gemm_dtype, timer
from perfmodel.scenario import Scenario


def _fields(sc: Scenario, fields):
    ops = [op for op in sc.table.ops if op.pass_ == "fwd"]
    sums = totals(ops, fields)
    return {k: vectorised(v, _fixed(sc), STEP) for k, v in sums.items()}


def report(sc: Scenario, prompt: int, output: int, fusion: Fusion = Fusion(), fields=("flops", "bytes")):
    """Cumulative ``fields`` (table totals: FLOPs, bytes) and calibrated seconds of
    generating ``output`` tokens after ``prompt`` with and without a KV cache, at output
    lengths doubling up to ``output`` (one row each), and their ratios (no cache / cache)."""
    import pandas as pd

    if prompt < 1 or output < 2:
        raise PerfmodelError(f"no-KV comparison needs a prompt of at least 1 token and an output of at least 2 (got {prompt}, {output})")
    limit = sc.arch.max_position_embeddings
    if limit is not None and prompt + output > limit:
        raise PerfmodelError(f"prompt + output = {prompt + output} exceeds {sc.arch.name}'s {limit} positions")
    b = sc.batch
    params = cost_params(sc.require_accelerator())
    pre = sc.but(phase="prefill", seq=prompt, context=0)
    dec = sc.but(phase="decode", seq=1, context=prompt)
    fp, fd = _fields(pre, fields), _fields(dec, fields)
    tp, td = timer(pre, fusion, params), timer(dec, fusion, params)
    dtype = gemm_dtype(sc)
    steps = np.arange(1, output, dtype=float)  # token i + 1 comes from step i
    nokv = {**{f: fp[f](b, prompt + steps, 0) for f in fields},
            "time_s": tp.calibrated(b, prompt + steps, 0, params, dtype, fusion)}
    cached = {**{f: fd[f](b, 1, prompt + steps - 1) for f in fields},
              "time_s": td.calibrated(b, 1, prompt + steps - 1, params, dtype, fusion)}
    first = {**{f: fp[f](b, prompt, 0) for f in fields}, "time_s": tp.calibrated(b, prompt, 0, params, dtype, fusion)}
    from perfmodel.fits import fit_columns

    cached_fit = fit_columns(sc.but(phase="decode", seq=1, context=prompt + output - 2))
    recompute_fit = fit_columns(sc.but(phase="prefill", seq=prompt + output - 1, context=0))
    lengths = sorted({min(2 ** i, output) for i in range(1, 64) if 2 ** (i - 1) < output} | {output})
    rows = []
    for m in lengths:
        row = {"model": sc.arch.name, "gpu": sc.accelerator.name, "batch": b, "prompt": prompt, "output": m}
        for key in (*fields, "time_s"):
            with_cache = float(first[key] + np.sum(np.broadcast_to(cached[key], steps.shape)[: m - 1]))
            without = float(first[key] + np.sum(np.broadcast_to(nokv[key], steps.shape)[: m - 1]))
            name = key.removesuffix("_s")
            unit = "_s" if key == "time_s" else ""
            row[f"cached_{name}{unit}"] = with_cache
            row[f"no_cache_{name}{unit}"] = without
            row[f"{name}_ratio"] = without / with_cache
        rows.append({**row, **cached_fit, "no_cache_memory_needed_bytes": recompute_fit["memory_needed_bytes"],
                     "no_cache_fits": recompute_fit["fits"]})
    return pd.DataFrame(rows)
