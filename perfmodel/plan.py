"""Search the layouts of a model on N GPUs: every tp × pp × dp (× ep for MoE models) whose
product is N, each checked against the model (one-line reason when it cannot run),
then against per-GPU memory (the reason says by how much it does not fit), and the ones
that fit timed and ranked by the objective:

- inference (``request`` on the layout): ``throughput`` ranks by output tokens/s,
  ``latency`` by end-to-end latency of the batch;
- training (``train`` iteration): ``throughput`` ranks by tokens/s, ``latency`` by step time.

Tensor parallelism stays inside one scale-up domain unless ``cross_node_tp``. ``split``
(the pipeline split fields of :class:`~perfmodel.layout.Layout`) applies to every
candidate with pp > 1.
"""

from __future__ import annotations

from perfmodel.cost import Fusion
from perfmodel.errors import PerfmodelError
from perfmodel.layout import Layout
from perfmodel.scenario import Scenario


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidates(arch, gpus: int) -> list[dict]:
    """Every (tp, pp, dp, ep) with tp·pp·dp = gpus; ep divides dp (experts over the
    data-parallel ranks), only for mixture-of-experts models."""
    moe = any(layer.ffn.__class__.__name__ == "MoE" for layer in arch.layers)
    out = []
    for tp in _divisors(gpus):
        for pp in _divisors(gpus // tp):
            dp = gpus // (tp * pp)
            for ep in (_divisors(dp) if moe else [1]):
                out.append({"tp": tp, "pp": pp, "dp": dp, "ep": ep})
    return out


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def plan(sc: Scenario, gpus: int, *, objective: str = "throughput", prompt: int = 1024, output: int = 256,
         global_batch: int = 512, micro_batch: int = 1, gpus_per_node: int | None = None, cross_node_tp: bool = False,
         fusion: Fusion = Fusion(), split: dict | None = None):
    """One row per candidate layout: ``fits``, ``reason`` (empty when it runs), the
    objective's columns, ``rank`` among those that fit (1 = best)."""
    import pandas as pd

    if objective not in ("throughput", "latency"):
        raise PerfmodelError(f"objective: {objective!r} is not one of throughput, latency")
    acc = sc.require_accelerator()
    from perfmodel.train import default_gpus_per_node

    per_node = gpus_per_node or default_gpus_per_node(acc, gpus)
    rows = []
    for cand in candidates(sc.arch, gpus):
        row = {**cand, "gpus": gpus, "fits": False, "reason": ""}
        try:
            if cand["tp"] > per_node and not cross_node_tp:
                raise PerfmodelError(f"tp={cand['tp']} spans nodes (scale-up domain {per_node} GPUs)")
            stages = {k: v for k, v in (split or {}).items() if v not in (None, False)} if cand["pp"] > 1 else {}
            row.update(_evaluate(sc, {**cand, **stages}, gpus, per_node, prompt, output, global_batch, micro_batch,
                                 fusion))
        except PerfmodelError as exc:
            row["reason"] = str(exc)
        rows.append(row)
    frame = pd.DataFrame(rows)
    key, ascending = _objective(sc, objective)
    ok = frame["fits"] & (frame["reason"] == "")
    frame["rank"] = pd.NA
    if ok.any():
        frame.loc[ok, "rank"] = frame.loc[ok, key].rank(ascending=ascending, method="first").astype(int)
    frame["rank"] = frame["rank"].astype("Int64")
    frame = frame.sort_values(["rank", "tp", "pp", "ep"], na_position="last").reset_index(drop=True)
    return frame


def _objective(sc: Scenario, objective: str) -> tuple[str, bool]:
    if sc.options.training:
        return ("tokens_per_s", False) if objective == "throughput" else ("step_time_s", True)
    return ("output_tokens_per_s", False) if objective == "throughput" else ("e2e_latency_s", True)


def _evaluate(sc, cand, gpus, per_node, prompt, output, global_batch, micro_batch, fusion) -> dict:
    if sc.options.training:
        from perfmodel.train import iteration, make_layout, memory_per_gpu, training_precision

        layout = make_layout(sc.arch, sc.accelerator, gpus=gpus, gpus_per_node=per_node, global_batch=global_batch,
                             micro_batch=micro_batch, **cand)
        one = training_precision(sc.but(batch=micro_batch, layout=layout))[0]
        need = max(memory_per_gpu(one.but(stage=i), layout, layout.micro_batches, i)["total_bytes"]
                   for i in range(layout.pp))
        _check_fit(need, sc.accelerator)
        result = iteration(sc, layout, fusion)
        keep = ("step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "mfu", "bubble_fraction",
                "exposed_communication_s", "memory_per_gpu_bytes", "fits")
        return {k: result[k] for k in keep}
    from perfmodel.parallel import local, memory_per_gpu, request

    layout = Layout(gpus=gpus, gpus_per_node=per_node, **cand)
    end = local(sc, layout).but(seq=1, context=prompt + output - 1, phase="decode")
    _check_fit(memory_per_gpu(end)[0], sc.accelerator)
    result = request(sc, layout, prompt, output, fusion)
    keep = ("output_tokens_per_s", "output_tokens_per_s_per_gpu", "ttft_s", "tpot_s", "e2e_latency_s",
            "communication_share", "memory_per_gpu_bytes", "fits")
    return {k: result[k] for k in keep}


def _check_fit(need: float, acc) -> None:
    if need > acc.memory_bytes:
        raise PerfmodelError(f"does not fit: needs {_gib(need)} per GPU of {_gib(acc.memory_bytes)}")
