"""perfmodel's matmul FLOPs against ``torch.utils.flop_counter.FlopCounterMode`` counting
the real ``transformers`` model of each preset, built from its full-size config.json.

Independent source: the ``transformers`` modelling code (5.23) executed op by op, and
torch's FLOP formulas (2.13). The models are built and run inside
``FakeTensorMode(allow_non_fake_inputs=True)``: shapes propagate, nothing is allocated,
and an 8B model's forward is counted in about a second on a CPU.

What FlopCounterMode counts (its registry in torch 2.13): ``aten.mm``, ``addmm``,
``bmm``, ``baddbmm``, ``_scaled_mm``, convolutions, and the fused attention kernels
``_scaled_dot_product_{flash,efficient,cudnn}_attention`` (+ backward), ``_flash_attention_*``,
``_efficient_attention_*``, flex attention; each at 2 FLOPs per multiply-add. Linear layers
(``mm``/``addmm``) and eager attention's ``matmul`` (``bmm``) decompose into these. It does
not count elementwise work, softmax, norms, embedding gathers, ``index_add``, the CPU SDPA
kernel ``_scaled_dot_product_flash_attention_for_cpu``, nor ``aten._grouped_mm``. Hence
``attn_implementation="eager"`` (it materialises the full score square whatever the
mask: compare with ``mask=none``) and, for MoE, ``experts_implementation="batched_mm"``
(one ``bmm`` row per (token, chosen expert), shape-static so fake tensors route it; the
5.23 default ``grouped_mm`` is invisible to the counter, and the ``eager`` loop over hit
experts needs ``nonzero`` on real data). Since every token runs exactly ``k`` experts,
the expert FLOPs are ``b·s·k`` × per-expert FLOPs whatever the routing; the real-weight
test below checks that the eager loop gives the same total.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.checkpoint import set_checkpoint_early_stop  # noqa: E402

from conftest import counted_with_result, fake_hf_model, our_matmul_flops, token_ids  # noqa: E402
from perfmodel import metrics  # noqa: E402
from perfmodel.evaluate import bindings, value  # noqa: E402
from perfmodel.hf_config import from_config  # noqa: E402
from perfmodel.options import Options  # noqa: E402
from perfmodel.presets import load_model, preset_path  # noqa: E402
from perfmodel.table import build  # noqa: E402

B, S = 2, 16

#: dense GQA; MoE (8 experts, top-2); GPT-2 (biases, learned positions, tied head);
#: DeepSeek-V2-Lite (MLA, shared experts, a dense first layer); Phi-3 (fused QKV and
#: gate-up, sliding window 2047)
PRESETS = ["llama-3-8b", "mixtral-8x7b", "gpt2-medium", "deepseek-v2-lite", "phi-3-mini-4k-instruct"]


@cache
def fake_model(name: str):
    """The preset's real ``transformers`` model on fake tensors, and the mode that owns them."""
    return fake_hf_model(json.loads(preset_path(name).read_text()))


def ids(batch: int, seq: int):
    return token_ids(batch, seq)


def counted(fn) -> int:
    """FLOPs FlopCounterMode counts while ``fn`` runs."""
    return counted_with_result(fn)[0]


def ours(name: str, options: Options, *, batch=B, seq=S, context=0, passes=("fwd",), arch=None) -> int:
    """perfmodel's matmul FLOPs over the ops of ``passes``."""
    return our_matmul_flops(arch or load_model(name), options, batch=batch, seq=seq, context=context, passes=passes)


def held_bytes(cache) -> int:
    """Bytes in a ``DynamicCache`` (2-byte elements): every layer's keys and values."""
    return 2 * sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers)


def kv_bytes(arch, options: Options, context: int) -> int:
    return value(metrics.kv_cache_bytes(arch, options), bindings(arch, b=B, t=context))


#: prompt length and cached tokens for the decode step: Phi-3-mini's 2100 passes its
#: 2047-token window, so its decode reads only the last W − 1 cached keys plus its own
PROMPT = {"phi-3-mini-4k-instruct": 2100}
#: presets that also run a 3-token chunk after the decode step
CHUNKED = ["llama-3-8b", "phi-3-mini-4k-instruct"]
#: presets whose forward + backward is counted (GPT-2's is, with recomputation, below)
TRAINED = ["mixtral-8x7b", "deepseek-v2-lite"]


@pytest.mark.parametrize("name", PRESETS)
def test_inference_steps_match(name):
    """A generation prefill (``logits_to_keep=1``: the last token's logits), one decode step
    against the real ``DynamicCache`` the prefill filled and, for ``CHUNKED``, a 3-token
    chunk after it, each against ``mask=none``; the cache holds exactly ``kv_cache_bytes``
    after the prefill and after the decode step. Presets not in the training test also count a
    forward with every token's logits (the training test's forward covers the others)."""
    model, mode = fake_model(name)
    arch = load_model(name)
    prompt = PROMPT.get(name, S)
    # transformers 5.23 caches DeepSeek's compressed latent and shared RoPE key, and at
    # every step re-expands every cached latent with kv_b_proj (``expand_kv`` in
    # modeling_deepseek_v2.py): our ``mla=expand`` form (``auto`` picks absorbed for decode)
    mla = "expand" if "kv_lora_rank" in json.loads(preset_path(name).read_text()) else "auto"
    with mode, torch.no_grad():
        if name not in TRAINED:
            every = counted(lambda: model(input_ids=ids(B, S), use_cache=False))
            assert every == ours(name, Options(phase="prefill", mask="none", all_logits=True))
        prefill, out = counted_with_result(lambda: model(input_ids=ids(B, prompt), logits_to_keep=1))
        cache = out.past_key_values
        after_prefill = held_bytes(cache)
        decode = counted(lambda: model(input_ids=ids(B, 1), past_key_values=cache))
        after_decode = held_bytes(cache)
        chunk = counted(lambda: model(input_ids=ids(B, 3), past_key_values=cache)) if name in CHUNKED else None
    assert prefill == ours(name, Options(phase="prefill", mask="none", mla=mla), seq=prompt)
    step = Options(phase="decode", mask="none", mla=mla)
    assert decode == ours(name, step, seq=1, context=prompt)
    if chunk is not None:
        assert chunk == ours(name, step, seq=3, context=prompt + 1)
    cached = step  # expand and absorbed both cache the latent, as transformers does
    assert after_prefill == kv_bytes(arch, cached, prompt)
    assert after_decode == kv_bytes(arch, cached, prompt + 1)


@pytest.mark.parametrize("name", TRAINED)
def test_train_step_matches(name):
    """Forward + ``loss.backward()`` against ``phase=train`` fwd+bwd matmul FLOPs, recompute
    none; ``attention_impl=naive`` because eager attention's backward does not recompute
    the scores (FlashAttention's QKᵀ backward does, 3×)."""
    model, mode = fake_model(name)
    model.train()
    try:
        with mode:
            got = counted(lambda: model(input_ids=ids(B, S), labels=ids(B, S), use_cache=False).loss.backward())
    finally:
        model.eval()
    options = Options(phase="train", mask="none", attention_impl="naive")
    assert got == ours(name, options, passes=("fwd", "bwd"))


def test_full_recompute_matches_gradient_checkpointing():
    """transformers' gradient checkpointing re-runs each decoder layer's forward in the
    backward pass: ``recompute=full`` (the recompute pass holds exactly the layer ops).
    torch's non-reentrant checkpoint stops recomputing once the last tensor the backward
    needs exists, which skips each layer's final matmul (``ffn.down_proj``: its output is
    not needed); with early stop off it re-runs the whole layer."""
    name = "gpt2-medium"
    model, mode = fake_model(name)
    model.train()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    try:
        with mode, set_checkpoint_early_stop(False):
            got = counted(lambda: model(input_ids=ids(B, S), labels=ids(B, S), use_cache=False).loss.backward())
    finally:
        model.activation_checkpointing_disable()
        model.eval()
    options = Options(phase="train", mask="none", attention_impl="naive", recompute="full")
    assert got == ours(name, options, passes=("fwd", "bwd", "recompute"))


#: small MoE configs of three families (real weights, so routing really happens)
SMALL_MOE = {
    "mixtral": dict(
        model_type="mixtral", vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
    ),
    "qwen2_moe": dict(
        model_type="qwen2_moe", vocab_size=100, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        shared_expert_intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        num_experts=8, num_experts_per_tok=2,
    ),
    "deepseek_v2": dict(
        model_type="deepseek_v2", vocab_size=100, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8,
        num_experts_per_tok=2, n_shared_experts=2, first_k_dense_replace=1, kv_lora_rank=16, q_lora_rank=None,
        qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, topk_method="greedy", n_group=1, topk_group=1,
    ),
}


@pytest.mark.parametrize("family", SMALL_MOE)
def test_moe_expert_implementations(family):
    """With real weights and random tokens the eager loop runs only the experts actually
    hit, yet its total equals ``b·s·k`` expert passes (our count); ``batched_mm`` gives the
    same; ``grouped_mm`` (the 5.23 default) is not counted at all, so the counter misses
    exactly our routed-expert matmuls."""
    config = SMALL_MOE[family]
    arch = from_config(config)
    options = Options(phase="prefill", mask="none", all_logits=True)
    expected = ours(family, options, arch=arch)
    table = build(arch, options)
    experts = [op for op in table.ops if op.name.startswith("moe.experts.")]
    routed = value(metrics.totals(experts, ("matmul_flops",))["matmul_flops"], bindings(arch, b=B, s=S, t=0))
    torch.manual_seed(0)
    tokens = torch.randint(0, config["vocab_size"], (B, S))
    for impl, want in (("eager", expected), ("batched_mm", expected), ("grouped_mm", expected - routed)):
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**config), attn_implementation="eager", experts_implementation=impl
        )
        with torch.no_grad():
            assert counted(lambda: model(input_ids=tokens, use_cache=False)) == want, impl


def test_cpu_sdpa_attention_is_not_counted():
    """On a CPU, ``attn_implementation="sdpa"`` runs ``_scaled_dot_product_flash_attention_for_cpu``,
    which has no FLOP formula: the counter sees everything but QKᵀ and PV."""
    config = SMALL_MOE["mixtral"]
    arch = from_config(config)
    options = Options(phase="prefill", mask="none", all_logits=True)
    core = [op for op in build(arch, options).ops if op.name in ("attn.qk", "attn.pv")]
    core_flops = value(metrics.totals(core, ("matmul_flops",))["matmul_flops"], bindings(arch, b=B, s=S, t=0))
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config), attn_implementation="sdpa", experts_implementation="batched_mm"
    )
    with torch.no_grad():
        got = counted(lambda: model(input_ids=ids(B, S), use_cache=False))
    assert got == ours("mixtral", options, arch=arch) - core_flops
