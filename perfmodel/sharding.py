"""The per-GPU operator table: the single-GPU table sharded by a :class:`Layout`, plus
communication rows.

Nothing is counted twice: every op and tensor of :func:`perfmodel.table.build` is the
same expression with symbols substituted or a factor applied.

- **Tensor parallelism** (Megatron column/row-parallel linears, vLLM the same):
  ``n_h -> n_h/tp`` (query heads: QKV, per-head norms, RoPE, the attention core, the
  output projection, MLA's ``q_b_proj``/``kv_b_proj``), ``n_kv -> n_kv/min(n_kv, tp)``
  (a KV head per GPU at least: fewer KV heads than ``tp`` are replicated),
  ``d_ff -> d_ff/tp``, ``d_se -> d_se/tp``, ``V -> V/tp`` (vocabulary-parallel embedding,
  LM head and cross-entropy). Ops whose expressions hold none of these symbols run whole
  on every TP rank: norms and residuals (split along the sequence with sequence
  parallelism), the router, MLA's down-projections ``q_a_proj``/``kv_a_proj`` and its
  latent cache (vLLM and Megatron-Core replicate them).
- **Expert parallelism**: each GPU holds ``E/ep`` routed experts (each ``d_e/tp`` wide:
  expert tensor parallelism = tp, Megatron-Core's default) and receives the tokens the
  ``ep`` ranks route to them: the routed ops take ``E -> E/ep, k -> k/ep, b -> ep·b,
  d_e -> d_e/tp`` (the same FLOPs per GPU on average; the experts touched out of the
  ``ep·b·s`` tokens it serves).
- **Context parallelism**: ``s -> s/cp`` tokens per GPU; the attention core's pairs are
  split evenly (load-balanced causal chunks): its work × 1/cp.
- **Pipeline parallelism**: a GPU runs its (virtual) stages' layers: each layer group's
  count symbol (``L``, ``L_moe``, …) -> the number of that group's layers on the GPU;
  the embedding runs on the first stage, the final norm, LM head and loss on the last.

Communication rows (:class:`~perfmodel.ops.comm.Comm`), messages taken from the ops
they follow: TP all-reduce after each attention and FFN block (reduce-scatter +
all-gather with sequence parallelism) and after the vocabulary-parallel embedding; the
logits all-gather at inference, the three cross-entropy all-reduces in training; EP
all-to-all dispatch and combine; CP all-gather of K/V (reduce-scatter of their gradients
backward); PP send/recv at stage boundaries; data-parallel gradient all-reduce (ZeRO 1–2:
reduce-scatter + parameter all-gather; ZeRO-3: per-layer parameter all-gathers forward and
backward, and the gradient reduce-scatter), over ``dp·cp`` ranks, the experts' over
``dp·cp/ep``. Training repeats each forward collective in the backward (and in a full
recomputation).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from sympy import Expr, Integer, sympify

from perfmodel import symbols as S
from perfmodel.architecture import Attention, LatentAttention
from perfmodel.errors import PerfmodelError
from perfmodel.layout import Layout
from perfmodel.ops.attention import kv_elements_per_token
from perfmodel.ops.base import EXPR_FIELDS, ZERO, Op, Tensor
from perfmodel.ops.comm import Comm, comm
from perfmodel.ops.optimizer import RECIPES
from perfmodel.options import Options
from perfmodel.table import Table

RESIDUALS = ("attn.residual", "xattn.residual", "ffn.residual")


def axis_ranks(layout: Layout, axis: str) -> tuple[int, int]:
    """(GPUs in one group of ``axis``, stride between them in Megatron-Core's rank order
    tp-cp-ep-dp-pp); ``dp`` is the gradient group ``dp·cp``, ``edp`` the experts' ``dp·cp/ep``."""
    tp, cp, dp, ep = layout.tp, layout.cp, layout.dp, layout.ep
    return {"tp": (tp, 1), "cp": (cp, tp), "ep": (ep, tp), "dp": (dp * cp, tp), "edp": (dp * cp // ep, tp * ep),
            "pp": (2, tp * cp * dp)}[axis]


def placement(layout: Layout, axis: str) -> tuple[int, int]:
    """(GPUs of one group per node ``n_g``, nodes it spans ``n_n``)."""
    size, stride = axis_ranks(layout, axis)
    per_node = layout.gpus_per_node
    n_g = 1 if stride >= per_node else min(size, per_node // stride)
    return n_g, max(1, size // n_g)


def tensor_parallel_map(arch, layout: Layout) -> dict:
    """Symbol -> per-GPU value under tensor parallelism (see the module docstring)."""
    tp = Integer(layout.tp)
    values = arch.symbol_values
    mapping = {S.d_ff: S.d_ff / tp, S.d_se: S.d_se / tp, S.V: S.V / tp, S.n_h: S.n_h / tp}
    if S.n_kv in values:
        mapping[S.n_kv] = S.n_kv / Integer(min(values[S.n_kv], layout.tp))
    return mapping


def expert_map(layout: Layout) -> dict:
    """Extra substitutions of the routed-expert ops and tensors."""
    ep, tp = Integer(layout.ep), Integer(layout.tp)
    return {S.E: S.E / ep, S.k: S.k / ep, S.b: ep * S.b, S.d_e: S.d_e / tp}


def gpu_layers(arch, layout: Layout, stage: int) -> list:
    """The layers pipeline stage ``stage`` runs (its ``v`` virtual stages, interleaved)."""
    sizes = layout.stage_layers(arch.num_hidden_layers)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    chosen = range(stage, len(sizes), layout.pp)
    return [layer for i in chosen for layer in arch.layers[starts[i]:starts[i] + sizes[i]]]


def stage_map(arch, layout: Layout, stage: int) -> dict:
    """Layer-count symbol -> how many of that group's layers this stage holds."""
    layers = gpu_layers(arch, layout, stage)
    return {g.repeat: Integer(sum(1 for layer in layers if layer == g.layer)) for g in arch.groups}


def _xreplace(expr, mapping) -> Expr:
    return sympify(expr).xreplace(mapping)


def _map_op(op: Op, mapping: dict) -> Op:
    gemm = None if op.gemm is None else tuple(_xreplace(x, mapping) for x in op.gemm)
    fields = {f: _xreplace(getattr(op, f), mapping) for f in EXPR_FIELDS if f != "repeat"}
    if isinstance(op, Comm):
        fields["message_bytes"] = _xreplace(op.message_bytes, mapping)
    return replace(op, gemm=gemm, **fields)


def _scale(op: Op, factor) -> Op:
    """Every count of ``op`` times ``factor`` (GEMM rows too)."""
    gemm = None if op.gemm is None else (op.gemm[0] * factor, *op.gemm[1:])
    return replace(op, gemm=gemm, **{f: getattr(op, f) * factor for f in EXPR_FIELDS if f != "repeat"})


def _routed(name: str) -> bool:
    return name.startswith("moe.experts.")


def _keeps_model_part(name: str, first: bool, last: bool) -> bool:
    return first if name.startswith("embed.") else last


def shard_op(op: Op, arch, layout: Layout) -> Op:
    """One op of the single-GPU table as one GPU of ``layout`` runs it."""
    tp_map = tensor_parallel_map(arch, layout)
    if isinstance(op, Comm):  # messages are whole tensors; only K/V for CP are per TP rank
        mapping = tp_map if op.axis == "cp" else {}
    else:
        mapping = {**tp_map, **expert_map(layout)} if _routed(op.name) else dict(tp_map)
    out = _map_op(op, mapping)
    if layout.sequence_parallel and layout.tp > 1 and not isinstance(op, Comm):
        if op.gemm is None and not op.core_attention and out.flops == op.flops and out.bytes == op.bytes:
            out = _scale(out, Integer(1) / layout.tp)  # norms, residuals, dropout: a sequence shard each
        elif out.saved_bytes == op.saved_bytes:
            # a column-parallel linear keeps its input's sequence shard and re-gathers it for
            # the backward (Korthikanti et al. 2022, §4.2.2)
            out = replace(out, saved_bytes=out.saved_bytes / layout.tp)
    if layout.cp > 1:
        out = _scale(out, Integer(1) / layout.cp) if op.core_attention else _map_op(out, {S.s: S.s / layout.cp})
    return out


def shard_tensor(tensor: Tensor, arch, layout: Layout) -> Tensor:
    mapping = dict(tensor_parallel_map(arch, layout))
    if tensor.routed:
        mapping.update({S.E: S.E / layout.ep, S.d_e: S.d_e / layout.tp})
    return replace(tensor, shape=tuple(_xreplace(x, mapping) for x in tensor.shape))


def _comm_rows(arch, options: Options, layout: Layout, forward: list[Op]) -> dict:
    """Forward communication rows keyed by (group, residual name) they precede (issued
    again in every pass that runs the residual), and model-level ones keyed by
    ("model", op name) they follow (issued only in their own ``during`` pass)."""
    by_key = {(op.group, op.name): op for op in forward}
    rows: dict[tuple[str, str], list[Comm]] = {}
    tp_on = layout.tp > 1
    for g in arch.groups:
        site = g.label
        layer = g.layer
        for name in RESIDUALS:
            res = by_key.get((site, name))
            if res is None:
                continue
            message = res.act_write_bytes
            out: list[Comm] = []
            block = name.split(".")[0]
            if name.startswith("ffn") and (site, "moe.combine") in by_key and layout.ep > 1:
                routed = next(op for op in forward if op.group == site and _routed(op.name))
                for part in ("dispatch", "combine"):
                    out.append(comm(f"ep.moe.{part}", "all_to_all", "ep", routed.act_read_bytes, repeat=g.repeat, group=site))
            if name.startswith("attn") and layout.cp > 1 and isinstance(layer.attention, (Attention, LatentAttention)):
                # the gathered output: cp shards of this GPU's s/cp tokens' K and V (MLA: expanded)
                kv = layout.cp * S.b * S.s * kv_elements_per_token(layer.attention, replace(options, mla="naive")) * S.B_a
                out.append(comm("cp.attn.kv_all_gather", "all_gather", "cp", kv, repeat=g.repeat, group=site))
            if tp_on and layout.sequence_parallel:
                out += [comm(f"tp.{block}.reduce_scatter", "reduce_scatter", "tp", message, repeat=g.repeat, group=site),
                        comm(f"tp.{block}.all_gather", "all_gather", "tp", message, repeat=g.repeat, group=site)]
            elif tp_on:
                out.append(comm(f"tp.{block}.all_reduce", "all_reduce", "tp", message, repeat=g.repeat, group=site))
            rows[(site, name)] = out
    if tp_on and ("model", "embed.tokens") in by_key:
        rows[("model", "embed.tokens")] = [comm("tp.embed.all_reduce", "all_reduce", "tp",
                                                by_key[("model", "embed.tokens")].act_write_bytes, repeat=1, group="model")]
    if tp_on and ("model", "lm_head") in by_key:
        head = by_key[("model", "lm_head")]
        if options.training:  # Megatron's vocab-parallel cross-entropy: max, target logit, sum of exps
            rows[("model", "loss")] = [comm("tp.loss.all_reduce", "all_reduce", "tp",
                                            by_key[("model", "loss")].act_write_bytes, repeat=3, group="model")]
            # the head's input gradient: partial sums over the vocabulary shards
            rows[("model", "lm_head")] = [comm("tp.lm_head.grad_all_reduce", "all_reduce", "tp", head.act_read_bytes,
                                               repeat=1, group="model", during="bwd")]
        else:
            rows[("model", "lm_head")] = [comm("tp.lm_head.all_gather", "all_gather", "tp",
                                               head.act_write_bytes, repeat=1, group="model")]
    return rows


def _pipeline_rows(layout: Layout, forward: list[Op], stage: int, training: bool) -> list[Comm]:
    """Activations (forward) and their gradients (backward) across this stage's boundaries,
    once per virtual stage: the GPU's own shard of the residual stream, ``s/cp`` tokens and,
    with sequence parallelism, ``1/tp`` of them (Megatron-Core ``get_tensor_shapes``)."""
    if layout.pp == 1:
        return []
    message = next(op.act_write_bytes for op in forward if op.name in RESIDUALS and op.group != "model")
    message = _xreplace(message, {S.s: S.s / layout.cp}) / (layout.tp if layout.sequence_parallel else 1)
    rows = []
    if stage < layout.pp - 1 or layout.v > 1:
        rows.append(comm("pp.send_activations", "send_recv", "pp", message, repeat=layout.v, group="model"))
    if training and (stage > 0 or layout.v > 1):
        rows.append(comm("pp.send_gradients", "send_recv", "pp", message, repeat=layout.v, group="model",
                         during="bwd"))
    return rows


def _data_parallel_rows(table: Table, layout: Layout, tensors: tuple[Tensor, ...], groups: tuple, stage_values: dict
                        ) -> tuple[list, Expr]:
    """Gradient reduction and ZeRO gathers; and the parameters this GPU's optimizer updates.
    ``groups``: each tensor's layer-count symbol in the built table (its ``repeat`` before
    the stage's counts replaced it), which says which layer group it belongs to."""
    recipe = RECIPES[table.options.optimizer]
    rows: list[Comm] = []
    owned = ZERO
    for axis, routed in (("dp", False), ("edp", True)):
        size = axis_ranks(layout, axis)[0]
        params = sum((t.numel * t.repeat for t in tensors if t.routed == routed), ZERO).xreplace(stage_values)
        owned += params / (size if layout.zero >= 1 else 1)
        if size == 1 or params == 0:
            continue
        grads = params * recipe.gradient_bytes
        if layout.zero == 0:
            rows.append(comm(f"{axis}.grad_all_reduce", "all_reduce", axis, grads, repeat=1, group="model", during="grad_sync"))
            continue
        rows.append(comm(f"{axis}.grad_reduce_scatter", "reduce_scatter", axis, grads, repeat=1, group="model",
                         during="grad_sync"))
        if layout.zero < 3:
            rows.append(comm(f"{axis}.param_all_gather", "all_gather", axis, params * S.B_w, repeat=1, group="model",
                             during="grad_sync"))
            continue
        # ZeRO-3: each layer's parameters gathered before its forward and its backward; the
        # embedding, final norm and LM head (the "model" group) likewise
        for repeat, label in [(g.repeat, g.label) for g in table.arch.groups] + [(Integer(1), "model")]:
            per_layer = sum((t.numel for t, group in zip(tensors, groups) if t.routed == routed and group == repeat),
                            ZERO)
            if per_layer != 0:
                for during in ("fwd", "bwd"):
                    rows.append(comm(f"{axis}.zero3_all_gather", "all_gather", axis, per_layer * S.B_w,
                                     repeat=repeat, group=label, during=during))
    return rows, owned


def shard(table: Table, layout: Layout, stage: int = 0) -> Table:
    """The operator table of one GPU of pipeline stage ``stage`` (every GPU of a stage does
    the same work); communication rows have ``pass_ = "comm"``."""
    arch, options = table.arch, table.options
    if arch.kind != "decoder":
        raise PerfmodelError(f"layout: parallel layouts cover decoder-only models; {arch.name} is {arch.kind}")
    layout.validate(arch)
    if not 0 <= stage < layout.pp:
        raise PerfmodelError(f"stage: {stage} is not a pipeline stage of pp={layout.pp}")
    first, last = stage == 0, stage == layout.pp - 1
    counts = stage_map(arch, layout, stage)
    kept = [t for t in table.tensors if t.repeat != 1 or _keeps_model_part(t.name, first, last)]
    if arch.tie_word_embeddings and layout.pp > 1 and last:  # Megatron keeps a copy for the LM head
        kept += [t for t in table.tensors if t.name == "embed.tokens.weight"]
    tensors = tuple(replace(shard_tensor(t, arch, layout), repeat=sympify(t.repeat).xreplace(counts)) for t in kept)
    groups = tuple(t.repeat for t in kept)
    forward = [op for op in table.ops if op.pass_ == "fwd"]
    comms = _comm_rows(arch, options, layout, forward)
    ops: list[Op] = []
    for op in table.ops:
        if op.pass_ == "optimizer":
            continue
        if op.group == "model" and not _keeps_model_part(op.name, first, last):
            continue
        rows = comms.get((op.group, op.name), ())
        if op.group == "model":
            ops.append(shard_op(op, arch, layout))
            ops += [shard_op(c, arch, layout) for c in rows if c.during == op.pass_]
        else:
            ops += [shard_op(replace(c, during=op.pass_), arch, layout) for c in rows]
            ops.append(shard_op(op, arch, layout))
    ops = [replace(op, repeat=sympify(op.repeat).xreplace(counts)) for op in ops]
    ops += _pipeline_rows(layout, forward, stage, options.training)
    if options.training:
        grad_rows, owned = _data_parallel_rows(table, layout, tensors, groups, counts)
        ops += [replace(op, repeat=sympify(op.repeat).xreplace(counts)) for op in grad_rows]
        step = next(op for op in table.ops if op.pass_ == "optimizer")
        ops.append(_scale(step, owned / table.params))
    kv_map = {**{k: v for k, v in tensor_parallel_map(arch, layout).items() if k == S.n_kv}, **counts}
    if layout.cp > 1:
        kv_map[S.s] = S.s / layout.cp
    return Table(arch, options, tensors, tuple(ops), per_gpu=tuple(kv_map.items()))


@lru_cache(maxsize=256)
def shard_cached(arch, options: Options, layout: Layout, stage: int) -> Table:
    """:func:`shard` of the built table, kept for repeated queries (sweeps, validation)."""
    from perfmodel.table import build

    return shard(build(arch, options), layout, stage)


def communication(table: Table) -> list[Comm]:
    """The communication rows of a (per-GPU) table."""
    return [op for op in table.ops if isinstance(op, Comm)]
