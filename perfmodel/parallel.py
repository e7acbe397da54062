"""Times on several GPUs: per-GPU compute from the cost model on the sharded table, plus
the communication rows timed by the accelerator's :class:`~perfmodel.collectives.Fabric`.

Inference (:func:`request`): the batch is split over the ``dp`` replicas; one step of a
replica runs its pipeline stages one after another (no micro-batching at a fixed batch),
each stage's kernels then its collectives, which sit on the critical path (tensor-parallel
all-reduces between dependent GEMMs, the expert all-to-all, the stage-to-stage send):
``step = Σ_stages (kernels + communication) + engine overhead``. The all-reduce is the
engines' custom one/two-shot kernel where it is faster (TensorRT-LLM and vLLM use it for
small messages on NVLink) unless ``custom_all_reduce=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import value
from perfmodel.layout import Layout
from perfmodel.memory import memory
from perfmodel.ops.comm import Comm
from perfmodel.request import cost_params, gemm_dtype, latency, timer
from perfmodel.cost import Fusion
from perfmodel.scenario import Scenario
from perfmodel.sharding import placement, stage_map


def fabric(acc):
    if getattr(acc, "fabric", None) is None:
        raise PerfmodelError(f"accelerator {acc.name!r} has no links data (hardware/data/links.csv)")
    return acc.fabric


def comm_seconds(op: Comm, values: dict, acc, layout: Layout, *, custom: bool = False) -> float:
    """Seconds of one call of a communication row (its message evaluated at ``values``)."""
    n_g, n_n = placement(layout, op.axis)
    message = float(value(op.message_bytes, values))
    return fabric(acc).seconds(op.collective, n_g, n_n, message, custom=custom and op.collective == "all_reduce")


def communication_seconds(sc: Scenario, *, during=("fwd",), custom: bool = False) -> float:
    """Seconds of the communication rows of ``sc``'s per-GPU table issued in ``during``."""
    acc = sc.require_accelerator()
    return sum(comm_seconds(op, sc.values, acc, sc.layout, custom=custom) * value(op.repeat, sc.values)
               for op in sc.table.ops if isinstance(op, Comm) and op.during in during)


def local(sc: Scenario, layout: Layout) -> Scenario:
    """``sc`` as one data-parallel replica runs it: ``batch / dp`` sequences, sharded."""
    if sc.batch % layout.dp:
        raise PerfmodelError(f"batch: {sc.batch} is not divisible by dp={layout.dp} (each replica runs batch/dp)")
    layout.validate(sc.arch)
    return sc.but(batch=sc.batch // layout.dp, layout=layout)


@dataclass(frozen=True)
class StageTimer:
    """Kernel seconds of each stage and the communication seconds of each stage, per phase."""

    kernels: tuple
    comm_s: tuple

    def seconds(self, b, s, t, params, dtype, fusion: Fusion):
        overhead = params.step_overhead_s(fusion.cuda_graphs)
        total = overhead
        for kernel, comm in zip(self.kernels, self.comm_s):
            total = total + kernel(b, s, t, *params.vector(dtype)) + comm
        return total


def stage_signature(arch, layout: Layout, stage: int) -> tuple:
    """Stages with equal layer counts that hold neither end of the model run the same table."""
    counts = tuple(sorted((str(k), int(v)) for k, v in stage_map(arch, layout, stage).items()))
    return counts, stage == 0, stage == layout.pp - 1


def stage_timer(sc: Scenario, fusion: Fusion, params, custom: bool) -> StageTimer:
    kernels, comms, seen = [], [], {}
    for i in range(sc.layout.pp):
        sig = stage_signature(sc.arch, sc.layout, i)
        if sig not in seen:
            st = sc.but(stage=i)
            seen[sig] = (timer(st, fusion, params).kernels, communication_seconds(st, custom=custom))
        kernels.append(seen[sig][0])
        comms.append(seen[sig][1])
    return StageTimer(tuple(kernels), tuple(comms))


def memory_per_gpu(sc: Scenario) -> tuple[float, int]:
    """(largest per-GPU bytes over the stages, the stage that holds them)."""
    first = {}
    for i in range(sc.layout.pp):
        first.setdefault(stage_signature(sc.arch, sc.layout, i), i)
    need = {i: value(memory(sc.but(stage=i).table)["total_bytes"], sc.values) for i in first.values()}
    worst = max(need, key=need.get)
    return need[worst], worst


def request(sc: Scenario, layout: Layout, prompt: int, output: int, fusion: Fusion = Fusion(), *,
            custom_all_reduce: bool = True, params=None) -> dict:
    """A request batch on ``layout``: ``ttft_s``, ``tpot_s``, ``e2e_latency_s``, throughput,
    the communication share, per-GPU memory and ``fits`` (per GPU)."""
    if output < 1:
        raise PerfmodelError(f"output: {output} must be at least 1 token")
    acc = sc.require_accelerator()
    params = params or cost_params(acc)
    one = local(sc, layout)
    pre = one.but(seq=prompt, context=0, phase="prefill")
    timers = {"prefill": stage_timer(pre, fusion, params, custom_all_reduce)}
    if output > 1:
        timers["decode"] = stage_timer(one.but(seq=1, context=prompt, phase="decode"), fusion, params, custom_all_reduce)
    dtype = gemm_dtype(sc)
    result = latency(lambda phase, s, t: timers[phase].seconds(one.batch, s, t, params, dtype, fusion), prompt, output)
    comm = {phase: sum(tm.comm_s) for phase, tm in timers.items()}
    end = one.but(seq=1, context=prompt + output - 1, phase="decode") if output > 1 else pre
    need, _ = memory_per_gpu(end)
    decode_comm = comm.get("decode", 0.0) * (output - 1)
    row = {key: result[key] for key in ("ttft_s", "tpot_s", "e2e_latency_s")}
    row.update({
        "output_tokens_per_s": sc.batch * output / row["e2e_latency_s"],
        "output_tokens_per_s_per_user": output / row["e2e_latency_s"],
        "output_tokens_per_s_per_gpu": sc.batch * output / row["e2e_latency_s"] / layout.gpus,
        "communication_s": comm["prefill"] + decode_comm,
        "communication_share": (comm["prefill"] + decode_comm) / row["e2e_latency_s"],
        "memory_per_gpu_bytes": need,
        "capacity_per_gpu_bytes": acc.memory_bytes,
        "fits": need <= acc.memory_bytes,
    })
    return row


def _layout_labels(layout: Layout) -> dict:
    return {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep, "cp": layout.cp, "gpus": layout.gpus}


def report(sc: Scenario, layout: Layout, prompt: int, output: int, fusion: Fusion = Fusion()):
    """``perfmodel request`` on a layout: one row with the layout, the latencies, per-GPU
    throughput and memory, and ``fits`` (per GPU)."""
    import pandas as pd

    acc = sc.require_accelerator()
    row = request(sc, layout, prompt, output, fusion)
    labels = {"model": sc.arch.name, "gpu": acc.name, **_layout_labels(layout), "batch": sc.batch, "prompt": prompt,
              "output": output, "weight_dtype": sc.weight_dtype, "act_dtype": sc.act_dtype, "kv_dtype": sc.kv_dtype}
    return pd.DataFrame([{**labels, **{k: v for k, v in row.items() if not k.startswith("_")}}])


def roofline_report(sc: Scenario, layout: Layout, by: str = "operator"):
    """``perfmodel roofline`` for one GPU of each pipeline stage: the per-GPU table's
    operators, communication rows timed by the collective model (``bound`` =
    ``communication``); totals add ``communication_time_s`` to the step."""
    import pandas as pd

    from perfmodel.api import roofline_report as single

    one = local(sc, layout)
    frames = []
    for stage in range(layout.pp):
        st = one.but(stage=stage)
        frame = single(st, by=by)
        comms = [op for op in st.table.ops if isinstance(op, Comm)]
        seconds = {id(op): comm_seconds(op, st.values, st.accelerator, layout, custom=not st.options.training)
                   * value(op.repeat, st.values) for op in comms}
        if by == "operator":
            is_comm = frame["pass"] == "comm"
            frame.loc[is_comm, "time_s"] = [seconds[id(op)] for op in comms]
            frame.loc[is_comm, "expected_time_s"] = frame.loc[is_comm, "time_s"]
            frame.loc[is_comm, "bound"] = "communication"
            frame["share_of_time"] = frame["time_s"] / frame["time_s"].sum()
        else:
            frame["communication_time_s"] = sum(seconds.values()) if by == "total" else [
                sum(seconds[id(op)] for op in comms if op.group == g) for g in frame["group"]]
        frame.insert(0, "stage", stage)
        for k, v in reversed(list(_layout_labels(layout).items())):
            frame.insert(0, k, v)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
