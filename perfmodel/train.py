"""A training iteration on a parallel layout, and the whole run.

Per pipeline stage, one micro-batch costs the cost model's kernels of the per-GPU table
(forward; backward and any recomputation) plus its exposed communication: the
tensor-parallel, expert all-to-all and context-parallel collectives sit between dependent
kernels (Megatron-LM without ``--tp-comm-overlap``), the stage-boundary sends too. The
micro-batches flow through the pipeline (Narayanan et al. 2021, §2.2):

    iteration = (m + (p − 1)/v) · T_stage + exposed data-parallel sync + optimizer step,

``T_stage`` the slowest stage's micro-batch time; the bubble fraction is
``(p − 1)/(v·m)`` of the ideal time. Named overlap options (defaults: what Megatron-LM
runs with its usual flags):

- ``Overlap.grad_reduce`` (``--overlap-grad-reduce``, on): the data-parallel gradient
  reduction hides under the last micro-batch's backward; only what is longer is exposed.
- ``Overlap.param_gather`` (``--overlap-param-gather``, on): ZeRO-1/2 parameter
  all-gathers hide under the next iteration's first forward, and ZeRO-3's per-layer
  gathers under the compute of each micro-batch (FSDP prefetch).
- ``Overlap.tp_comm`` (``--tp-comm-overlap``, off as in Megatron-Core; Megatron-Bridge's
  Llama recipes turn it on): Transformer Engine's userbuffers pipeline the TP
  all-gathers / reduce-scatters with the linear GEMMs they feed.
- ``Overlap.ep_comm`` (``--overlap-moe-expert-parallel-comm``, off as in Megatron-Core):
  the EP all-to-alls of one micro-batch run under another's compute.
- ``Overlap.p2p`` (``--overlap-p2p-communication``, on as in Megatron-LM; only the
  interleaved schedule overlaps): pipeline sends and receives under the next chunk.

The overlapped collectives of a micro-batch share its compute window: exposed is what
exceeds it (``max(0, Σ overlapped − compute)``), plus every collective not overlapped.

Precision: ``fp8`` training is Transformer Engine's ``fp8_autocast`` over Megatron-Core's
TE linears (the recipes FP8 delayed/current scaling and MXFP8): the linear layers' GEMMs
run at the FP8 rate; the LM head (Megatron-Core's own ``ColumnParallelLinear``), the
router, the attention core (``fp8_dot_product_attention`` off) and every activation,
saved tensor and message stay BF16.

Memory per GPU: weights, gradients and optimizer states of the GPU's shard, divided over
the data-parallel ranks by the ZeRO stage (Rajbhandari et al. 2019, §5), and the
activations of the micro-batches in flight (1F1B: ``p − stage`` on a stage, at most
``m``; interleaved: stage 0 holds ``p·(1 + (p−1)/(p·v))``, Korthikanti et al. 2022 §4.2.3).

MFU counts the model's forward and backward matrix FLOPs from the single-GPU table
(attention included, causal pairs exact, recomputation excluded); HFU adds the
recomputed forward; ``mfu_6n`` is the ``6·N_active`` per token convention.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sympy import Integer, lambdify, sympify

from perfmodel import symbols as S
from perfmodel.cost import PARAMETERS, Fusion, _bounded, accelerator_terms, kernel_time, kernels
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import number, value
from perfmodel.layout import Layout
from perfmodel.memory import training_activation_bytes
from perfmodel.metrics import params as param_counts
from perfmodel.ops.base import Op
from perfmodel.ops.comm import Comm
from perfmodel.ops.optimizer import RECIPES
from perfmodel.parallel import comm_seconds
from perfmodel.request import cost_params, gemm_dtype
from perfmodel.scenario import Scenario
from perfmodel.sharding import axis_ranks
from perfmodel.table import build


@dataclass(frozen=True)
class Overlap:
    """Which communication hides under compute (see the module docstring)."""

    grad_reduce: bool = True
    param_gather: bool = True
    tp_comm: bool = False
    ep_comm: bool = False
    p2p: bool = True

    def hidden_axes(self, layout: Layout) -> tuple[str, ...]:
        """The per-micro-batch collectives (by axis) that run under compute."""
        return tuple(axis for axis, on in (("tp", self.tp_comm), ("ep", self.ep_comm),
                                           ("pp", self.p2p and layout.v > 1)) if on)


#: FP8 training keeps these GEMMs in BF16 (see the module docstring)
BF16_GEMMS = ("lm_head", "moe.router")
#: the axes of the per-micro-batch collectives
LAYER_AXES = ("tp", "ep", "cp", "pp")


def training_precision(sc: Scenario) -> tuple[Scenario, str]:
    """(the scenario with BF16 activations, the linear GEMMs' dtype) for FP8 training;
    ``(sc, its GEMM dtype)`` otherwise."""
    if gemm_dtype(sc) == "fp8":
        return sc.but(act_dtype="bf16", kv_dtype="bf16", gemm_dtype="fp8"), "fp8"
    return sc, gemm_dtype(sc)


def kernel_dtype(kernel, linear_dtype: str) -> str:
    """The dtype a kernel's products run in: ``linear_dtype`` for the linear layers, BF16
    for the rest when the linears run FP8."""
    if linear_dtype != "fp8":
        return linear_dtype
    linear = kernel.kind == "gemm" and not any(part in BF16_GEMMS for part in kernel.name.split("+"))
    return "fp8" if linear else "bf16"


def fp8_casts(ops, fusion: Fusion) -> tuple[list[Op], list[Op], list[Op]]:
    """Transformer Engine's FP8 quantization around each FP8 linear, as memory-bound ops
    (forward, backward, once per iteration). Hopper and Blackwell FP8 GEMMs take both
    operands K-major, so each tensor a GEMM of the forward, the data gradient and the
    weight gradient reads is cast once into two FP8 copies, row-wise and column-wise
    (TE ``cast_transpose``; the amax is computed in the same pass): read at its own width,
    write one byte per element twice.

    - forward: the linear's input, ``M·K`` elements (a merged QKV or gate/up GEMM casts its
      shared input once);
    - backward: the gradient of its output, ``M·N`` elements;
    - once per iteration: its weight, ``K·N`` per group touched (Megatron-Core passes
      ``is_first_microbatch``: TE keeps the FP8 weights for the other micro-batches).
    Current scaling's separate amax pass (FP8-CS) and MXFP8's block scales are not counted."""
    fwd, bwd, once = [], [], []
    for k in kernels([op for op in ops if op.pass_ == "fwd"], fusion):
        if k.kind != "gemm" or kernel_dtype(k, "fp8") != "fp8":
            continue
        m, n, kk = k.inputs[S.M_g], k.inputs[S.N_g], k.inputs[S.K_g]
        weights = k.inputs[S.X_w] / S.B_w
        fwd.append(Op(f"fp8.cast.{k.name}", repeat=k.repeat, group=k.inputs["group"],
                      act_read_bytes=m * kk * S.B_a, act_write_bytes=2 * m * kk))
        bwd.append(Op(f"fp8.cast.{k.name}.grad", repeat=k.repeat, group=k.inputs["group"], pass_="bwd",
                      act_read_bytes=m * n * S.B_a, act_write_bytes=2 * m * n))
        once.append(Op(f"fp8.cast.{k.name}.weight", repeat=k.repeat, group=k.inputs["group"], pass_="optimizer",
                       weight_bytes=weights * S.B_w, act_write_bytes=2 * weights))
    return fwd, bwd, once


def micro_batches(global_batch: int, dp: int, micro_batch: int) -> int:
    """Micro-batches per iteration on each data-parallel rank."""
    per_rank = dp * micro_batch
    if global_batch % per_rank:
        raise PerfmodelError(f"global-batch: {global_batch} is not a multiple of dp*micro_batch = "
                             f"{dp}*{micro_batch} = {per_rank}")
    return global_batch // per_rank


def model_state_bytes(dense_params, routed_params, recipe: str, weight_bytes, layout: Layout) -> dict:
    """Weights, gradients and optimizer states of one GPU's parameters, ZeRO-sharded over
    the ``dp·cp`` ranks (the experts' over ``dp·cp/ep``): stage 1 shards the optimizer
    states, 2 also the gradients, 3 also the weights."""
    r = RECIPES[recipe]
    dense_ranks, routed_ranks = axis_ranks(layout, "dp")[0], axis_ranks(layout, "edp")[0]

    def part(bytes_per_param, stage):
        return number(sum(sympify(p) * sympify(bytes_per_param) / (ranks if layout.zero >= stage else 1)
                          for p, ranks in ((dense_params, dense_ranks), (routed_params, routed_ranks))))

    return {"weights_bytes": part(weight_bytes, 3), "gradient_bytes": part(r.gradient_bytes, 2),
            "optimizer_bytes": part(r.optimizer_bytes, 1)}


def in_flight(layout: Layout, m: int, stage: int):
    """Micro-batches whose activations a stage holds at the peak of the schedule."""
    p, v = layout.pp, layout.v
    if layout.schedule == "interleaved":
        return Integer(p) * (1 + Integer(p - 1) / (p * v)) if stage == 0 else Integer(min(m, p - stage))
    return Integer(min(m, p - stage))


#: the compute rates a training step sustains at the fraction eta_t of the kernel fits'
COMPUTE_RATES = (S.R, S.R_a, S.R_v, S.R_x)


def _seconds(ops, sc: Scenario, fusion: Fusion, linear_dtype: str | None = None):
    """The cost model's kernel seconds of ``ops`` at the scenario's values, each kernel
    at its dtype (:func:`kernel_dtype`; default: the scenario's GEMM dtype), as a function
    of ``eta_t``: the kernel formulas with the compute rates at ``eta_t·R`` (memory
    bandwidth unchanged), compiled once (``lambdify``) and evaluated per fraction."""
    if not ops:
        return lambda eta: 0.0
    acc = sc.require_accelerator()
    params = cost_params(acc)
    linear_dtype = linear_dtype or gemm_dtype(sc)
    terms = {}
    # each kernel's inputs as numbers first: the formulas' Max/Piecewise then evaluate at once
    total = Integer(0)
    for kernel in kernels(ops, fusion):
        dtype = kernel_dtype(kernel, linear_dtype)
        if dtype not in terms:
            rates = accelerator_terms(acc, params, dtype)
            terms[dtype] = {**rates, **{r: S.eta_t * rates[r] for r in COMPUTE_RATES},
                            **dict(zip(PARAMETERS, params.vector(dtype))), **sc.values}
        numbers = terms[dtype]
        inputs = {k: v if k == "group" else _bounded(k, sympify(v).xreplace(numbers)) for k, v in kernel.inputs.items()}
        seconds = kernel_time(replace(kernel, inputs=inputs), fusion).xreplace(numbers)
        total += seconds * sympify(kernel.repeat).xreplace(numbers)
    return lambdify(S.eta_t, total, "math")


def _comm(ops, sc: Scenario, layout: Layout, during) -> float:
    return sum(comm_seconds(op, sc.values, sc.accelerator, layout) * value(op.repeat, sc.values)
               for op in ops if isinstance(op, Comm) and op.during in during)


_STAGES: dict = {}


def stage_costs(sc: Scenario, layout: Layout, stage: int, fusion: Fusion, linear_dtype: str | None = None,
                eta: float | None = None) -> dict:
    """One micro-batch on one stage: forward, backward (with recomputation) and
    communication seconds by axis; and the once-per-iteration data-parallel sync and
    optimizer (kept per model, step, accelerator and layout: ``plan`` and validation
    repeat them). ``linear_dtype``: the linear layers' GEMM dtype (default the scenario's);
    ``eta``: the sustained fraction of the compute rates (default the accelerator's
    fitted ``train_compute_fraction``)."""
    linear_dtype = linear_dtype or gemm_dtype(sc)
    eta = cost_params(sc.require_accelerator()).train_compute_fraction if eta is None else eta
    key = (sc.arch, sc.options, sc.batch, sc.seq_tokens, sc.weight_dtype, sc.act_dtype, sc.accelerator.name,
           replace(layout, micro_batches=1 if layout.schedule == "1f1b" else layout.pp), stage, fusion, linear_dtype, eta)
    if key not in _STAGES:
        _STAGES[key] = _stage_costs(sc, layout, stage, fusion, linear_dtype, eta)
    return _STAGES[key]


_KERNELS: dict = {}
_OPTIMIZERS: dict = {}


def _stage_costs(sc: Scenario, layout: Layout, stage: int, fusion: Fusion, linear_dtype: str, eta: float) -> dict:
    st = sc.but(layout=layout, stage=stage)
    ops = st.table.ops
    # the kernels do not depend on the data-parallel size: shared by layouts that differ in dp
    from perfmodel.parallel import stage_signature

    key = (sc.arch, sc.options, sc.batch, sc.seq_tokens, sc.weight_dtype, sc.act_dtype, sc.accelerator.name, layout.tp,
           layout.ep, layout.cp, layout.sequence_parallel, stage_signature(sc.arch, layout, stage), fusion, linear_dtype)
    casts = fp8_casts(ops, fusion) if linear_dtype == "fp8" else ([], [], [])
    if key not in _KERNELS:
        _KERNELS[key] = (_seconds([op for op in ops if op.pass_ == "fwd"] + casts[0], st, fusion, linear_dtype),
                         _seconds([op for op in ops if op.pass_ in ("recompute", "bwd")] + casts[1], st, fusion,
                                  linear_dtype))
    # the optimizer updates this GPU's ZeRO shard: it depends on the data-parallel size
    if (key, layout) not in _OPTIMIZERS:
        _OPTIMIZERS[key, layout] = _seconds([op for op in ops if op.pass_ == "optimizer"] + casts[2], st,
                                            Fusion(fold_elementwise=False))
    fwd, bwd = (f(eta) for f in _KERNELS[key])
    optimizer = _OPTIMIZERS[key, layout](eta)
    layer_comm = {axis: _comm([op for op in ops if isinstance(op, Comm) and op.axis == axis], st, layout,
                              ("fwd", "recompute", "bwd")) for axis in LAYER_AXES}
    zero3 = _comm([op for op in ops if op.name.endswith("zero3_all_gather")], st, layout, ("fwd", "bwd"))
    sync_ops = [op for op in ops if isinstance(op, Comm) and op.during == "grad_sync"]
    grad = _comm([op for op in sync_ops if "grad" in op.name], st, layout, ("grad_sync",))
    gather = _comm([op for op in sync_ops if "param" in op.name], st, layout, ("grad_sync",))
    return {"fwd_s": fwd, "bwd_s": bwd, "comm_s": layer_comm,
            "zero3_gather_s": zero3, "grad_sync_s": grad, "param_gather_s": gather, "optimizer_s": optimizer,
            "scenario": st}


def iteration(sc: Scenario, layout: Layout, fusion: Fusion = Fusion(), overlap: Overlap = Overlap(),
              eta: float | None = None) -> dict:
    """One training iteration: ``layout.micro_batches`` micro-batches of
    ``layout.micro_batch`` sequences of ``sc.seq_tokens`` tokens on each of the ``dp``
    replicas (global batch ``dp·micro_batch·micro_batches``); ``eta``: the sustained
    fraction of the compute rates (default the accelerator's ``train_compute_fraction``)."""
    if not sc.options.training:
        raise PerfmodelError("train: the scenario's phase must be train")
    m = layout.micro_batches
    global_batch = layout.dp * layout.micro_batch * m
    peak = sc.require_accelerator().peak(gemm_dtype(sc))
    sc, linear_dtype = training_precision(sc.but(batch=layout.micro_batch))
    eta = cost_params(sc.require_accelerator()).train_compute_fraction if eta is None else eta
    stages = [stage_costs(sc, layout, i, fusion, linear_dtype, eta) for i in range(layout.pp)]
    hidden = overlap.hidden_axes(layout)
    per_mb, exposed_layer = [], []
    for c in stages:
        compute = c["fwd_s"] + c["bwd_s"]
        zero3 = max(0.0, c["zero3_gather_s"] - compute) if overlap.param_gather else c["zero3_gather_s"]
        shared = sum(c["comm_s"][a] for a in hidden)
        exposed = sum(t for a, t in c["comm_s"].items() if a not in hidden) + max(0.0, shared - compute)
        exposed_layer.append(exposed)
        per_mb.append(compute + exposed + zero3)
    slowest = max(per_mb)
    p, v = layout.pp, layout.v
    pipeline = (m + (p - 1) / v) * slowest
    exposed_sync = []
    for c in stages:
        window = c["bwd_s"] if overlap.grad_reduce else 0.0
        gather = 0.0 if overlap.param_gather else c["param_gather_s"]
        exposed_sync.append(max(0.0, c["grad_sync_s"] - window) + gather + c["optimizer_s"])
    step = pipeline + max(exposed_sync)
    tokens = global_batch * sc.seq_tokens
    memory = [memory_per_gpu(c["scenario"], layout, m, i) for i, c in enumerate(stages)]
    worst = max(range(p), key=lambda i: memory[i]["total_bytes"])
    flops = model_flops(sc, global_batch)
    acc = sc.require_accelerator()
    exposed_comm = m * max(exposed_layer) + max(
        max(0.0, c["grad_sync_s"] - (c["bwd_s"] if overlap.grad_reduce else 0.0)) for c in stages)
    return {
        "step_time_s": step,
        "tokens_per_s": tokens / step,
        "tokens_per_s_per_gpu": tokens / step / layout.gpus,
        "model_flops_per_s_per_gpu": flops["model"] / step / layout.gpus,
        "mfu": flops["model"] / step / layout.gpus / peak,
        "hfu": flops["hardware"] / step / layout.gpus / peak,
        "mfu_6n": flops["six_n"] / step / layout.gpus / peak,
        "micro_batches": m,
        "bubble_fraction": (p - 1) / (v * m),
        "exposed_communication_s": exposed_comm,
        "communication_share": exposed_comm / step,
        "train_compute_fraction": eta,
        **{f"{k}_bytes_per_gpu": number(memory[worst][k + "_bytes"])
           for k in ("weights", "gradient", "optimizer", "activation")},
        "memory_per_gpu_bytes": number(memory[worst]["total_bytes"]),
        "capacity_per_gpu_bytes": acc.memory_bytes,
        "fits": memory[worst]["total_bytes"] <= acc.memory_bytes,
    }


def model_flops(sc: Scenario, global_batch: int) -> dict:
    """Matrix FLOPs of one iteration from the single-GPU table: ``model`` (forward and
    backward), ``hardware`` (plus recomputation), ``six_n`` (6 · active params per token)."""
    table = build(sc.arch, sc.options)
    values = sc.but(batch=global_batch).values

    def total(passes):
        return value(sum((op.matmul_flops * op.repeat for op in table.ops if op.pass_ in passes), Integer(0)), values)

    active = value(param_counts(table)["active_params"], values)
    return {"model": total(("fwd", "bwd")), "hardware": total(("fwd", "recompute", "bwd")),
            "six_n": 6 * active * global_batch * sc.seq_tokens}


def memory_per_gpu(st: Scenario, layout: Layout, m: int, stage: int) -> dict:
    """Bytes on one GPU of ``stage``: model states (ZeRO) and activations in flight."""
    table = st.table
    values = st.values
    dense = value(sum((t.numel * t.repeat for t in table.tensors if not t.routed), Integer(0)), values)
    routed = value(sum((t.numel * t.repeat for t in table.tensors if t.routed), Integer(0)), values)
    states = model_state_bytes(dense, routed, st.options.optimizer, value(S.B_w, values), layout)
    # full recomputation keeps each of this stage's layers' input: the per-GPU counts apply
    kept = training_activation_bytes(table).xreplace(dict(table.per_gpu))
    activations = value(kept * in_flight(layout, m, stage), values)
    out = {**states, "activation_bytes": activations}
    out["total_bytes"] = sum(out.values())
    return out


def rank_layers(layout: Layout, num_layers: int) -> tuple[int, ...]:
    """Decoder layers on each pipeline rank (its virtual stages together)."""
    stages = layout.stage_layers(num_layers)
    return tuple(sum(stages[r::layout.pp]) for r in range(layout.pp))


def run(row: dict, tokens: int, gpus: int) -> dict:
    """The whole run: iterations, wall-clock days and GPU-hours to train on ``tokens``."""
    seconds = tokens / row["tokens_per_s"]
    return {"training_tokens": tokens, "iterations": tokens / (row["tokens_per_s"] * row["step_time_s"]),
            "wall_clock_days": seconds / 86400, "gpu_hours": seconds * gpus / 3600}


def default_gpus_per_node(acc, gpus: int) -> int:
    """GPUs behind one scale-up domain (8 on HGX, 72 on NVL72), or all of them if fewer;
    the largest divisor of ``gpus`` that fits the domain (256 GPUs on NVL72: 64 per rack)."""
    domain = acc.fabric.domain_gpus if getattr(acc, "fabric", None) is not None else 8
    return max(d for d in range(1, min(gpus, domain) + 1) if gpus % d == 0)


def make_layout(arch, acc, *, gpus: int, tp: int = 1, pp: int = 1, dp: int | None = None, ep: int = 1, cp: int = 1,
                zero: int = 1, sequence_parallel: bool | None = None, interleave: int = 1, micro_batch: int = 1,
                global_batch: int = 512, gpus_per_node: int | None = None, **split) -> Layout:
    """A validated training layout; ``dp`` defaults to ``gpus / (tp·pp·cp)``; ``split``: the
    pipeline split fields of :class:`Layout` (first/last_stage_layers, embedding/loss_in_split)."""
    if dp is None:
        if gpus % (tp * pp * cp):
            raise PerfmodelError(f"gpus={gpus} is not a multiple of tp*pp*cp = {tp}*{pp}*{cp} = {tp * pp * cp}")
        dp = gpus // (tp * pp * cp)
    m = micro_batches(global_batch, dp, micro_batch)
    layout = Layout(tp=tp, pp=pp, dp=dp, ep=ep, cp=cp, gpus=gpus, zero=zero,
                    gpus_per_node=gpus_per_node or default_gpus_per_node(acc, gpus),
                    sequence_parallel=tp > 1 if sequence_parallel is None else sequence_parallel,
                    schedule="interleaved" if interleave > 1 else "1f1b", v=interleave, micro_batch=micro_batch,
                    micro_batches=m, **split)
    layout.validate(arch)
    return layout


def report(sc: Scenario, layout: Layout, *, tokens: int | None = None, fusion: Fusion = Fusion(),
           overlap: Overlap = Overlap()):
    """``perfmodel train``: one row, the layout and the iteration (and the run with ``tokens``)."""
    import pandas as pd

    row = iteration(sc, layout, fusion, overlap)
    # the same step with every kernel at its fitted rate (eta = 1): the bound the sustained fraction is taken from
    row["step_time_at_kernel_rates_s"] = iteration(sc, layout, fusion, overlap, eta=1.0)["step_time_s"]
    labels = {"model": sc.arch.name, "gpu": sc.accelerator.name, "gpus": layout.gpus, "tp": layout.tp,
              "pp": layout.pp, "dp": layout.dp, "ep": layout.ep, "cp": layout.cp, "zero": layout.zero,
              "sequence_parallel": layout.sequence_parallel, "schedule": layout.schedule, "interleave": layout.v,
              "global_batch": layout.dp * layout.micro_batch * layout.micro_batches, "micro_batch": layout.micro_batch,
              "seq": sc.seq_tokens, "recompute": sc.options.recompute,
              "layers_per_stage": ",".join(str(n) for n in rank_layers(layout, sc.arch.num_hidden_layers)),
              "tp_comm_overlap": overlap.tp_comm, "ep_comm_overlap": overlap.ep_comm, "overlap_p2p_comm": overlap.p2p}
    out = {**labels, **row}
    if tokens is not None:
        out.update(run(row, tokens, layout.gpus))
    out["flop_convention"] = ("mfu: forward+backward matrix FLOPs of the operator table (attention included, "
                              "causal pairs exact, no recomputation); hfu: plus recomputation; mfu_6n: 6*N_active per token")
    return pd.DataFrame([out])
