"""Memory per GPU on a parallel layout, for ``memory``, ``compare`` and ``sweep``.

Each GPU of a pipeline stage holds that stage's shard (:func:`perfmodel.sharding.shard`);
the figure reported is the stage that needs the most (``stage`` says which), and ``fits``
compares it with one GPU's capacity.

- Inference: one data-parallel replica runs ``batch / dp`` sequences
  (:func:`perfmodel.parallel.local`); the KV cache is the shard's (heads over tp, layers
  over pp, tokens over cp).
- Training: :func:`perfmodel.train.memory_per_gpu` — model states ZeRO-sharded over the
  data-parallel ranks, the activations of ``batch`` sequences per micro-batch times the
  micro-batches a stage holds at the peak of 1F1B (``pp − stage``: enough micro-batches to
  fill the pipeline).
"""

from __future__ import annotations

import numpy as np

from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import number, value
from perfmodel.layout import Layout
from perfmodel.memory import memory
from perfmodel.scenario import Scenario

INFER_PARTS = ("weights", "kv_cache", "activation")
TRAIN_PARTS = ("weights", "gradient", "optimizer", "activation")


def stages(sc: Scenario, layout: Layout) -> list[int]:
    """One pipeline stage of each distinct kind (equal layer counts, neither end, run the same table)."""
    from perfmodel.parallel import stage_signature

    first: dict = {}
    for i in range(layout.pp):
        first.setdefault(stage_signature(sc.arch, layout, i), i)
    return list(first.values())


def training_layout(layout: Layout) -> Layout:
    """The layout with enough micro-batches to fill its pipeline (the peak of 1F1B)."""
    from dataclasses import replace

    return replace(layout, micro_batches=max(layout.micro_batches, layout.pp))


def memory_row(sc: Scenario, layout: Layout) -> dict:
    """Bytes on the GPU that needs the most: its parts (``<part>_bytes_per_gpu``),
    ``memory_per_gpu_bytes``, ``stage``; with an accelerator ``capacity_per_gpu_bytes``
    and ``fits``."""
    layout.validate(sc.arch)
    if sc.options.training:
        from perfmodel.train import memory_per_gpu, training_precision

        full = training_layout(layout)
        one = training_precision(sc.but(layout=full))[0]
        need = {i: memory_per_gpu(one.but(stage=i), full, full.micro_batches, i) for i in stages(one, full)}
        parts = TRAIN_PARTS
    else:
        from perfmodel.parallel import local

        one = local(sc, layout)
        need = {}
        for i in stages(one, layout):
            st = one.but(stage=i)
            need[i] = {k: value(v, st.values) for k, v in memory(st.table).items()}
        parts = INFER_PARTS
    worst = max(need, key=lambda i: need[i]["total_bytes"])
    row = {f"{p}_bytes_per_gpu": number(need[worst][f"{p}_bytes"]) for p in parts}
    row["memory_per_gpu_bytes"] = number(need[worst]["total_bytes"])
    row["stage"] = worst
    acc = sc.accelerator
    if acc is not None:
        row["capacity_per_gpu_bytes"] = acc.memory_bytes
        row["fits"] = row["memory_per_gpu_bytes"] <= acc.memory_bytes
    return row


def layout_labels(layout: Layout) -> dict:
    return {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep, "cp": layout.cp, "gpus": layout.gpus}


def grid_values(sc: Scenario, layout: Layout, build, axes: dict) -> np.ndarray:
    """A quantity (``build(scenario) -> expression``) on one GPU of ``layout`` over a sweep
    grid, the largest over the pipeline stages; the grid's batch is the whole batch, each
    replica running ``batch / dp`` of it (every batch must divide)."""
    from sympy import Integer

    from perfmodel import symbols as S
    from perfmodel.sweeps import grid_values as evaluate

    if sc.options.training:
        raise PerfmodelError("sweep: a training step on a layout depends on its schedule and ZeRO stage; "
                             "use `memory --phase train` or `train` with the layout")
    bad = [int(b) for b in axes["batch"] if b % layout.dp]
    if bad:
        raise PerfmodelError(f"batch: {bad[0]} is not divisible by dp={layout.dp} (each replica runs batch/dp)")
    layout.validate(sc.arch)
    one = sc.but(layout=layout)
    out = None
    for i in stages(one, layout):
        st = one.but(stage=i)
        expr = build(st).xreplace({S.b: S.b / Integer(layout.dp)})
        values = evaluate(expr, st.values, axes)
        out = values if out is None else np.maximum(out, values)
    return out
