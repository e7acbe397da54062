"""Sharding conserves work: the per-GPU tables of every GPU of a layout add up to the
single-GPU table, plus exactly the work that Megatron-LM / vLLM replicate on each TP rank
(stated per test from the frameworks' layer definitions, not from perfmodel's code).

Independent sources: Megatron-LM's ColumnParallelLinear/RowParallelLinear (Shoeybi et
al. 2019, §3: two all-reduces of b·s·h per layer forward), vLLM's DeepSeek-V2 attention
(``kv_a_proj_with_mqa`` is a ReplicatedLinear; q/kv up-projections column-parallel),
Megatron-Core's MoE router (replicated on TP ranks), and the shipped config.json files.
"""

from __future__ import annotations

import pytest
from sympy import Integer

from perfmodel.evaluate import bindings, value
from perfmodel.layout import Layout
from perfmodel.options import Options
from perfmodel.sharding import communication, placement, shard
from perfmodel.table import build
from tests.test_layout import LLAMA, MIXTRAL, _arch

LLAMA70 = _arch("llama-3.1-70b")
V2LITE = _arch("deepseek-v2-lite")


def _total(ops, field, values):
    return value(sum((getattr(op, field) * op.repeat for op in ops), Integer(0)), values)


def _params(tensors, values):
    return value(sum((t.numel * t.repeat for t in tensors), Integer(0)), values)


def _all_gpus(arch, options, layout, field, **step):
    """``field`` summed over every GPU: each stage's table times the GPUs of that stage."""
    local = bindings(arch, **step)
    per_stage = layout.tp * layout.dp * layout.cp
    out = 0
    for stage in range(layout.pp):
        table = shard(build(arch, options), layout, stage)
        ops = [op for op in table.ops if op.pass_ != "comm" and op.pass_ != "optimizer"]
        out += per_stage * (_params(table.tensors, local) if field == "params" else _total(ops, field, local))
    return out


def _single(arch, options, field, **step):
    table = build(arch, options)
    values = bindings(arch, **step)
    if field == "params":
        return _params(table.tensors, values)
    return _total([op for op in table.ops if op.pass_ != "optimizer"], field, values)


PREFILL, DECODE, TRAIN = Options(phase="prefill"), Options(phase="decode"), Options(phase="train")
STEP = dict(b=2, s=512, t=0)


def test_dense_tp_pp_conserves_flops_and_weights():
    # Llama-3-8B, tp=4 pp=4: every linear is split (vocab-parallel head too); norms are
    # replicated on the 4 TP ranks: 2 per layer (d each) + the final norm
    layout = Layout(tp=4, pp=4)
    d, layers = 4096, 32
    for options in (PREFILL, TRAIN):
        assert _all_gpus(LLAMA, options, layout, "matmul_flops", **STEP) == _single(LLAMA, options, "matmul_flops", **STEP)
    norms = 2 * layers * d + d
    assert _all_gpus(LLAMA, PREFILL, layout, "params") == _single(LLAMA, PREFILL, "params") + 3 * norms
    assert _single(LLAMA, PREFILL, "params") == 8_030_261_248  # Llama-3-8B model card (8.03B)


def test_gqa_with_fewer_kv_heads_than_tp_replicates_kv_projections():
    # Llama-3.1-70B on tp=16: 8 KV heads, so each is held by 2 GPUs: the K and V
    # projections run twice in total; 2·b·s·d·(n_kv·d_h) FLOPs each per layer
    layout = Layout(tp=16)
    b, s = STEP["b"], STEP["s"]
    d, n_kv, d_h, layers = 8192, 8, 128, 80
    kv_proj = 2 * (2 * b * s * d * n_kv * d_h) * layers
    got = _all_gpus(LLAMA70, PREFILL, layout, "matmul_flops", **STEP)
    assert got == _single(LLAMA70, PREFILL, "matmul_flops", **STEP) + kv_proj
    # the KV cache per GPU is one KV head's: 2·1·d_h·B_kv per token per layer
    table = shard(build(LLAMA70, DECODE), layout)
    write = next(op for op in table.ops if op.name == "attn.kv_cache_write")
    assert value(write.kv_write_bytes, bindings(LLAMA70, b=1, s=1, t=0)) == 2 * 1 * d_h * 2


def test_moe_with_expert_parallelism_conserves_work_over_the_global_batch():
    # Mixtral-8x7B, tp=2, dp=4, ep=4 (8 GPUs): each GPU holds 2 experts at half width and
    # runs its own b sequences; the 4 data-parallel ranks together run 4b. The router
    # (2·tokens·d·E) is replicated on the 2 TP ranks; dense weights on the 4 DP ranks.
    layout = Layout(tp=2, dp=4, ep=4)
    local, global_ = dict(STEP), dict(STEP, b=4 * STEP["b"])
    router = 2 * global_["b"] * STEP["s"] * 4096 * 8 * 32
    assert _all_gpus(MIXTRAL, PREFILL, layout, "matmul_flops", **local) == \
        _single(MIXTRAL, PREFILL, "matmul_flops", **global_) + router
    # expert weights read: E/ep experts, touched by the ep·b·s tokens they serve = all E
    # of the single table at the global batch
    expert_ops = lambda ops: [op for op in ops if op.name.startswith("moe.experts.")]  # noqa: E731
    table = shard(build(MIXTRAL, PREFILL), layout)
    per_gpu = _total(expert_ops(table.ops), "weight_bytes", bindings(MIXTRAL, **local))
    whole = _total(expert_ops(build(MIXTRAL, PREFILL).ops), "weight_bytes", bindings(MIXTRAL, **global_))
    assert per_gpu * layout.tp * layout.ep == pytest.approx(whole, rel=1e-12)
    # parameters: routed experts once over the 8 GPUs; everything else per DP rank
    single = build(MIXTRAL, PREFILL)
    values = bindings(MIXTRAL)
    routed = _params([t for t in single.tensors if t.routed], values)
    dense = _params([t for t in single.tensors if not t.routed], values)
    norms_router = 32 * (2 * 4096 + 4096 * 8) + 4096
    assert _all_gpus(MIXTRAL, PREFILL, layout, "params") == routed + 4 * (dense + norms_router)


def test_mla_replicates_down_projections_and_latent_cache():
    # DeepSeek-V2-Lite (27 layers, 16 heads, no q_lora, kv_lora_rank 512, rope 64), tp=4:
    # kv_a_proj (d -> 512 + 64) is replicated (vLLM ReplicatedLinear), so are the routers
    # of the 26 MoE layers (64 experts); everything else splits
    layout = Layout(tp=4)
    b, s = STEP["b"], STEP["s"]
    d, layers, moe_layers = 2048, 27, 26
    replicated = layers * 2 * b * s * d * (512 + 64) + moe_layers * 2 * b * s * d * 64
    got = _all_gpus(V2LITE, PREFILL, layout, "matmul_flops", **STEP)
    assert got == _single(V2LITE, PREFILL, "matmul_flops", **STEP) + 3 * replicated
    table = shard(build(V2LITE, DECODE), layout)
    write = next(op for op in table.ops if op.name == "attn.kv_cache_write")
    assert value(write.kv_write_bytes, bindings(V2LITE, b=1, s=1, t=0)) == (512 + 64) * 2  # the whole latent


def test_mla_moe_with_expert_parallelism():
    layout = Layout(tp=2, dp=2, ep=2)
    global_ = dict(STEP, b=2 * STEP["b"])
    b, s, d = global_["b"], STEP["s"], 2048
    replicated = 27 * 2 * b * s * d * (512 + 64) + 26 * 2 * b * s * d * 64
    assert _all_gpus(V2LITE, PREFILL, layout, "matmul_flops", **STEP) == \
        _single(V2LITE, PREFILL, "matmul_flops", **global_) + replicated


def test_megatron_tp_two_all_reduces_per_layer_forward():
    # Shoeybi et al. 2019 §3: forward, one all-reduce after attention and one after the
    # MLP, each of b·s·h elements; training doubles them in the backward
    table = shard(build(LLAMA, TRAIN), Layout(tp=8))
    layer = [c for c in communication(table) if c.group != "model"]
    assert {(c.name, c.during) for c in layer} == {("tp.attn.all_reduce", "fwd"), ("tp.ffn.all_reduce", "fwd"),
                                                   ("tp.attn.all_reduce", "bwd"), ("tp.ffn.all_reduce", "bwd")}
    values = bindings(LLAMA, b=1, s=4096, t=0)
    assert {value(c.message_bytes, values) for c in layer} == {1 * 4096 * 4096 * 2}
    assert all(c.repeat == 32 for c in layer)  # every layer


def test_sequence_parallel_splits_norms_and_swaps_all_reduce():
    plain = shard(build(LLAMA, TRAIN), Layout(tp=4))
    sp = shard(build(LLAMA, TRAIN), Layout(tp=4, sequence_parallel=True))
    names = {c.name for c in communication(sp) if c.group != "model"}
    assert names == {"tp.attn.reduce_scatter", "tp.attn.all_gather", "tp.ffn.reduce_scatter", "tp.ffn.all_gather"}
    values = bindings(LLAMA, b=1, s=2048, t=0)
    norm = lambda t: next(op for op in t.ops if op.name == "attn.norm")  # noqa: E731
    assert value(norm(sp).act_read_bytes, values) * 4 == value(norm(plain).act_read_bytes, values)


def test_pipeline_stages_hold_their_layers_and_boundary_sends():
    # Llama-3.1-70B: 80 layers over 3 stages -> 27, 27, 26 (first stages take the remainder)
    layout = Layout(pp=3)
    tables = [shard(build(LLAMA70, PREFILL), layout, stage) for stage in range(3)]
    counts = [next(op.repeat for op in t.ops if op.name == "attn.q_proj") for t in tables]
    assert counts == [27, 27, 26]
    assert [any(op.name == "embed.tokens" for op in t.ops) for t in tables] == [True, False, False]
    assert [any(op.name == "lm_head" for op in t.ops) for t in tables] == [False, False, True]
    assert [[c.name for c in communication(t)] for t in tables] == [["pp.send_activations"]] * 2 + [[]]


def test_expert_all_to_all_and_data_parallel_rows():
    # 2 nodes of 8: tp=8 inside a node, dp=2 across nodes; ZeRO-1: gradient
    # reduce-scatter + parameter all-gather over the dp group (one GPU per node each)
    layout = Layout(tp=8, dp=2, gpus_per_node=8, zero=1)
    table = shard(build(LLAMA, TRAIN), layout)
    sync = [c for c in communication(table) if c.during == "grad_sync"]
    assert [c.collective for c in sync] == ["reduce_scatter", "all_gather"]
    assert placement(layout, "dp") == (1, 2) and placement(layout, "tp") == (8, 1)
    moe = shard(build(MIXTRAL, TRAIN), Layout(dp=4, ep=4))
    assert {c.name for c in communication(moe) if c.axis == "ep"} == {"ep.moe.dispatch", "ep.moe.combine"}


def test_pipeline_message_is_the_gpus_sequence_shard():
    """Megatron-Core get_tensor_shapes: the p2p tensor is (s/cp [/tp with sequence
    parallelism], b, h). Llama-3.1-70B, h=8192, s=8192, b=1, bf16: 8192*8192*2 = 128 MiB
    whole; tp=4 with SP: 32 MiB; with cp=2 as well: 16 MiB."""
    values = bindings(LLAMA70, b=1, s=8192, t=0)
    whole = 8192 * 8192 * 2
    for kw, expected in ((dict(pp=2), whole), (dict(pp=2, tp=4, sequence_parallel=True), whole // 4),
                         (dict(pp=2, tp=4, cp=2, sequence_parallel=True), whole // 8)):
        table = shard(build(LLAMA70, TRAIN), Layout(**kw), 0)
        send = next(c for c in communication(table) if c.name == "pp.send_activations")
        assert value(send.message_bytes, values) == expected


def test_a_stage_of_only_the_embedding():
    """Embedding counted as a layer (account_for_embedding_in_pipeline_split), 80 layers
    + 1 over pp=3: 27 slots each; stage 0 runs the embedding and 26 layers, stage 1 27,
    stage 2 27 and the head."""
    layout = Layout(pp=3, embedding_in_split=True)
    tables = [shard(build(LLAMA70, TRAIN), layout, stage) for stage in range(3)]
    assert [next(op.repeat for op in t.ops if op.name == "attn.q_proj") for t in tables] == [26, 27, 27]
    assert [any(op.name == "embed.tokens" for op in t.ops) for t in tables] == [True, False, False]


def test_zero3_gathers_every_layer_and_the_model_parts():
    """ZeRO-3 / FSDP (Rajbhandari et al. 2019 §5.3): each layer's parameters are
    all-gathered before its forward and again before its backward. Llama-3-8B (config.json:
    h=4096, 32 heads of 128, 8 KV heads, ffn 14336, vocab 128256, untied): one layer holds
    q,o 2·4096² + k,v 2·4096·1024 + gate/up/down 3·4096·14336 + 2 norms 2·4096
    = 218,112,000 parameters; the embedding, LM head and final norm 2·128256·4096 + 4096
    = 1,050,677,248. In bf16 (2 bytes), 32 layers, fwd and bwd each."""
    layout = Layout(dp=8, gpus_per_node=8, zero=3)
    table = shard(build(LLAMA, TRAIN), layout)
    values = bindings(LLAMA, b=1, s=8192, t=0)
    gathers = [c for c in communication(table) if c.name == "dp.zero3_all_gather"]
    got = sorted((c.during, c.group, int(value(c.repeat, values)), int(value(c.message_bytes, values))) for c in gathers)
    layer, model = 218_112_000 * 2, 1_050_677_248 * 2
    assert got == sorted([("fwd", "all", 32, layer), ("bwd", "all", 32, layer),
                          ("fwd", "model", 1, model), ("bwd", "model", 1, model)])
