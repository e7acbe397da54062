"""Every family reader of ``perfmodel.hf_config`` against the real ``transformers`` classes,
on many small configurations rather than a handful of presets.

For each generated config.json (tiny sizes, so a meta-device build takes milliseconds)
three things must agree exactly with the model ``transformers`` 5.23 builds from it:

- total parameters: ``sum(p.numel() for p in model.parameters())`` (tied weights once);
- active parameters per token: every parameter less, in each routed-experts module
  (``*Experts``, stacked ``[E, ...]`` weights), the ``(E - k)/E`` share a token skips;
- which layers keep a sliding window and how wide: what transformers' own
  ``DynamicCache(config=...)`` builds (``cache_utils.get_layer_types_and_kwargs``).

Optional fields are generated both present and absent (and null where the config class
accepts null), so the readers' defaults are checked against the config classes'
defaults: ``num_key_value_heads`` (absent: each class's own default, e.g. 8 for Mistral,
32 for Qwen2; null: the head count), ``head_dim``, ``tie_word_embeddings``, biases,
sliding windows / ``use_sliding_window`` / ``max_window_layers`` / ``layer_types``,
``mlp_only_layers`` / ``decoder_sparse_step``, ``first_k_dense_replace``,
``n_shared_experts``, ``q_lora_rank`` (absent vs null vs set), expert-count aliases,
``sliding_window_pattern`` (Gemma-3), ``no_rope_layers`` (SmolLM3), ``use_bias``
(StarCoder2), ``use_qk_norm`` (Cohere)…

Two parts: a one-field-at-a-time table (each optional field absent / null / set on a
base config, so every default is exercised deterministically) and a hypothesis sweep
over random combinations (derandomized, so CI sees the same cases each run).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import hf_active, hf_meta_model, hf_numel, perfmodel_params
from perfmodel.hf_config import READERS, from_config

pytestmark = [
    pytest.mark.usefixtures("transformers_available"),
    # n_shared_experts=0 builds a zero-width shared MLP (0 parameters), which torch warns about
    pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op"),
]

ABSENT = object()  # a key left out of the generated config.json


def with_fields(base: dict, **fields) -> dict:
    """``base`` with ``fields`` set; a field whose value is ABSENT is removed."""
    out = dict(base)
    for key, value in fields.items():
        if value is ABSENT:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def hf_windows(cfg) -> list[int | None]:
    """Per layer: the sliding window transformers' DynamicCache keeps, or None (full)."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    types, kwargs = get_layer_types_and_kwargs(cfg.get_text_config(decoder=True))
    assert set(types) <= {"full_attention", "sliding_attention"}, types
    return [kw["sliding_window"] if t == "sliding_attention" else None for t, kw in zip(types, kwargs)]


def check(data: dict) -> None:
    """perfmodel and transformers agree on total and active parameters and on windows."""
    model = hf_meta_model(data)
    ours = perfmodel_params(data)
    assert ours["total_params"] == hf_numel(model), data
    assert ours["active_params"] == hf_active(model, model.config), data
    arch = from_config(data)
    assert [layer.attention.sliding_window for layer in arch.layers] == hf_windows(model.config), data
    if arch.family in PARTIAL_ROPE:
        check_rotated(arch, model, data)


#: families whose configs may rotate only part of each head
PARTIAL_ROPE = ("phi", "phi3", "gpt_neox")


def check_rotated(arch, model, data) -> None:
    """The features RoPE rotates per head match transformers: its attention's own
    ``rotary_ndims`` where it keeps one (phi, gpt_neox), and the size of its rotary
    table (one inverse frequency per rotated pair, ``arange(0, dim, 2)``) always."""
    ours = {layer.attention.rotary_dim or layer.attention.head_dim for layer in arch.layers}
    assert len(ours) == 1, data
    (rotated,) = ours
    table = next(m for name, m in model.named_modules() if name.endswith("rotary_emb"))
    assert table.inv_freq.numel() == (rotated + 1) // 2, data
    ndims = {m.rotary_ndims for m in model.modules() if hasattr(m, "rotary_ndims")}
    assert ndims <= {rotated}, data


# ---------------------------------------------------------------------------------------
# One optional field at a time, on a small base config per family.

BASES = {
    "llama": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64),
    "mistral": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64),
    "mixtral": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64, num_local_experts=4, num_experts_per_tok=2),
    "qwen2": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3, vocab_size=64),
    "qwen2_moe": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3, vocab_size=64, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, shared_expert_intermediate_size=16),
    "qwen3": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=3, vocab_size=64),
    "qwen3_moe": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3, vocab_size=64, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8),
    "gemma": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=2, vocab_size=64),
    "gemma2": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=3, vocab_size=64, sliding_window=16),
    # Phi3Config's pad_token_id defaults to 32000, which must be inside the vocabulary
    "phi3": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64, pad_token_id=0),
    "olmo": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64),
    "deepseek_v2": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_hidden_layers=3, vocab_size=64, kv_lora_rank=8, q_lora_rank=12, qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=6, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, n_shared_experts=1, first_k_dense_replace=1),
    "deepseek_v3": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_hidden_layers=4, vocab_size=64, kv_lora_rank=8, q_lora_rank=12, qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=6, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1),
    "gpt2": dict(n_embd=32, n_head=4, n_layer=2, n_positions=16, vocab_size=64),
    "gpt_neox": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_hidden_layers=2, vocab_size=64),
    "falcon": dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, vocab_size=64),
    "gpt_oss": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=3, vocab_size=64, num_local_experts=4, num_experts_per_tok=2, sliding_window=6),
    # seven layers, so the default sliding_window_pattern (6) has a full layer inside
    "gemma3_text": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=7, vocab_size=64, sliding_window=16),
    "olmo2": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64),
    "olmoe": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64, num_experts=4, num_experts_per_tok=2),
    "starcoder2": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64),
    "granite": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64),
    "cohere": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=64),
    # transformers 5.23 cannot build a Ministral without head_dim (the attention reads None)
    "ministral": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=2, vocab_size=64),
    # SmolLM3Config's pad_token_id defaults to 128004, which must be inside the vocabulary
    "smollm3": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=4, vocab_size=64, pad_token_id=0),
    "phi": dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_hidden_layers=2, vocab_size=64),
    # 8-wide heads: rotary_dim set (GPTJConfig's default, 64, is wider than these heads)
    "gptj": dict(n_embd=32, n_head=4, n_layer=2, n_positions=16, vocab_size=64, rotary_dim=4),
}

TIE = [{"tie_word_embeddings": v} for v in (True, False)]
BOTH = (True, False)
QWEN_WINDOWS = [
    {"use_sliding_window": True},  # sliding_window absent: the class default 4096
    {"use_sliding_window": True, "sliding_window": 8},
    {"use_sliding_window": True, "sliding_window": None},
    {"use_sliding_window": False, "sliding_window": 8},
    {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1},
    {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 0},
    {"sliding_window": 8, "max_window_layers": 1},  # use_sliding_window absent: False
]
QWEN_MOE_LAYERS = [
    {"mlp_only_layers": [1]},
    {"mlp_only_layers": []},
    {"mlp_only_layers": None},
    {"decoder_sparse_step": 2},
    {"decoder_sparse_step": 2, "mlp_only_layers": [0, 1]},
    {"decoder_sparse_step": 4},  # no layer is sparse
]

# An absent num_key_value_heads means the config class's default (KV_CLASS_DEFAULT
# below); those variants use twice that many heads, so "absent" differs from "= heads".
VARIANTS = {
    "llama": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 1},
        {"num_key_value_heads": 4},
        {"head_dim": 12},
        {"head_dim": None},
        *TIE,
        *({"attention_bias": v} for v in BOTH),
        *({"mlp_bias": v} for v in BOTH),
        {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True},
    ],
    "mistral": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 16, "hidden_size": 64},  # MistralConfig: 8
        {"head_dim": 12},
        {"head_dim": None},
        {"sliding_window": ABSENT},  # MistralConfig: 4096
        {"sliding_window": None},
        {"sliding_window": 6},
        *TIE,
    ],
    "mixtral": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 16, "hidden_size": 64},  # MixtralConfig: 8
        {"head_dim": 12},
        {"sliding_window": 6},
        {"sliding_window": None},
        {"num_local_experts": ABSENT, "num_experts": 3},  # attribute_map alias
        {"num_local_experts": 1, "num_experts_per_tok": 1},
        {"num_experts_per_tok": 4},
        *TIE,
    ],
    "qwen2": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 64, "hidden_size": 128},  # Qwen2Config: 32
        {"num_key_value_heads": None},
        {"head_dim": 12},
        *TIE,
        *QWEN_WINDOWS,
        {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1,
         "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]},
    ],
    "qwen2_moe": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 32, "hidden_size": 64},  # Qwen2MoeConfig: 16
        {"head_dim": 12},
        *({"qkv_bias": v} for v in BOTH),
        *TIE,
        *QWEN_WINDOWS,
        *QWEN_MOE_LAYERS,
    ],
    "qwen3": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 64, "hidden_size": 128},  # Qwen3Config: 32
        {"num_key_value_heads": None},
        {"head_dim": ABSENT},  # Qwen3Config: 128
        *({"attention_bias": v} for v in BOTH),
        *TIE,
        *QWEN_WINDOWS,
    ],
    "qwen3_moe": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 8},  # Qwen3MoeConfig: 4
        {"head_dim": 12},
        *({"attention_bias": v} for v in BOTH),
        *TIE,
        *QWEN_WINDOWS,
        *QWEN_MOE_LAYERS,
        {"num_experts": ABSENT, "num_local_experts": 3},  # attribute_map alias
    ],
    "gemma": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 32, "hidden_size": 64},  # GemmaConfig: 16
        {"head_dim": ABSENT},  # GemmaConfig: 256
        *({"attention_bias": v} for v in BOTH),
        *TIE,
    ],
    "gemma2": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 8},  # Gemma2Config: 4
        {"head_dim": ABSENT},  # Gemma2Config: 256
        {"sliding_window": ABSENT},  # 4096, alternating from layer 0
        {"sliding_window": None},  # no layer slides
        {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"]},
        {"layer_types": ["full_attention"] * 3},
        *({"attention_bias": v} for v in BOTH),
        *TIE,
    ],
    "phi3": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 1},
        {"head_dim": 12},
        {"sliding_window": 6},
        {"sliding_window": None},
        *TIE,
        {"partial_rotary_factor": 0.5},
        {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75}},
    ],
    "olmo": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 1},
        {"head_dim": 12},
        *({"attention_bias": v} for v in BOTH),
        *TIE,
    ],
    "deepseek_v2": [
        {"q_lora_rank": ABSENT},  # DeepseekV2Config: 1536
        {"q_lora_rank": None},  # no query compression (V2-Lite)
        {"n_shared_experts": ABSENT},  # 2
        {"n_shared_experts": 0},
        {"first_k_dense_replace": ABSENT},  # 0
        {"first_k_dense_replace": 3},  # every layer dense
        {"moe_layer_freq": 2},  # not read by transformers' DeepseekV2
        *({"attention_bias": v} for v in BOTH),
        {"n_routed_experts": ABSENT, "num_experts": 3},  # attribute_map alias
        *TIE,
    ],
    "deepseek_v3": [
        {"q_lora_rank": ABSENT},  # DeepseekV3Config: 1536
        {"q_lora_rank": None},
        {"n_shared_experts": ABSENT},  # 1
        {"n_shared_experts": 2},
        {"first_k_dense_replace": ABSENT},  # 3
        {"first_k_dense_replace": 0},
        {"moe_layer_freq": 2},  # not read by transformers' DeepseekV3
        *({"attention_bias": v} for v in BOTH),
        {"n_routed_experts": ABSENT, "num_local_experts": 3},  # attribute_map alias
        *TIE,
    ],
    "gpt2": [
        {"n_inner": 24},
        {"n_inner": None},
        *TIE,
        {"n_embd": ABSENT, "hidden_size": 32},  # attribute_map aliases
        {"n_layer": ABSENT, "num_hidden_layers": 3, "n_head": ABSENT, "num_attention_heads": 2},
        {"n_positions": ABSENT, "max_position_embeddings": 24},
        {"activation_function": "relu"},
    ],
    "gptj": [
        {"n_inner": 48},
        {"n_inner": None},
        {"rotary_dim": 8},  # the whole head
        {"rotary_dim": ABSENT, "n_embd": 256, "n_head": 2},  # the class default 64 of a 128-wide head
        *TIE,  # the LM head's bias stays untied
        {"n_embd": ABSENT, "hidden_size": 32},  # attribute_map aliases
        {"n_layer": ABSENT, "num_hidden_layers": 3, "n_head": ABSENT, "num_attention_heads": 2},
        {"activation_function": "relu"},
    ],
    "gpt_neox": [
        *({"attention_bias": v} for v in BOTH),
        *({"use_parallel_residual": v} for v in BOTH),
        *TIE,
        {"rotary_pct": 1.0},
        {"rotary_pct": 0.5},
        {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}},
    ],
    "falcon": [
        # old decoder: multi_query (1 KV head) unless false; parallel_attn with one shared norm
        {"multi_query": False},
        {"parallel_attn": False},
        {"parallel_attn": False, "multi_query": False},
        {"num_ln_in_parallel_attn": 2},  # old decoder, parallel, two norms
        {"num_ln_in_parallel_attn": 1},
        {"bias": True},
        {"ffn_hidden_size": 20},
        {"alibi": True},
        *TIE,
        {"hidden_size": ABSENT, "n_embed": 32},
        # new decoder architecture (Falcon-40B/180B): GQA with num_kv_heads, ln_attn + ln_mlp
        {"new_decoder_architecture": True},
        {"new_decoder_architecture": True, "num_kv_heads": 2},
        {"new_decoder_architecture": True, "num_kv_heads": 1, "num_ln_in_parallel_attn": 1},
        {"new_decoder_architecture": True, "num_kv_heads": 2, "num_ln_in_parallel_attn": None},
        {"new_decoder_architecture": True, "num_kv_heads": 2, "bias": True},
        {"new_decoder_architecture": True, "parallel_attn": False},
        # legacy custom-code files (model_type RefinedWeb / RefinedWebModel; see conftest)
        {"model_type": "RefinedWebModel", "num_attention_heads": ABSENT, "n_head": 4, "num_hidden_layers": ABSENT, "n_layer": 2},
        {"model_type": "RefinedWeb", "num_attention_heads": ABSENT, "n_head": 4, "num_hidden_layers": ABSENT, "n_layer": 2, "n_head_kv": 2},
        {"model_type": "RefinedWeb", "num_attention_heads": ABSENT, "n_head": 4, "num_hidden_layers": ABSENT, "n_layer": 2},
        {"model_type": "RefinedWebModel", "n_head": 4, "num_attention_heads": ABSENT, "n_layer": 2, "num_hidden_layers": ABSENT, "n_head_kv": 1},
    ],
    "gpt_oss": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 16, "hidden_size": 64},  # GptOssConfig: 8
        {"head_dim": ABSENT},  # GptOssConfig: 64
        {"sliding_window": ABSENT},  # 128, on even layers
        {"sliding_window": None},  # every layer full
        {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"]},
        {"layer_types": ["full_attention"] * 3},
        *({"attention_bias": v} for v in BOTH),  # absent: true
        {"num_local_experts": ABSENT, "num_experts": 3},  # attribute_map alias
        {"num_local_experts": 1, "num_experts_per_tok": 1},
        {"num_experts_per_tok": 4},
        *TIE,
    ],
    "gemma3_text": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 8},  # Gemma3TextConfig: 4
        {"head_dim": ABSENT},  # Gemma3TextConfig: 256
        {"sliding_window": ABSENT},  # 4096
        {"sliding_window": None},  # no layer slides
        {"sliding_window_pattern": 2},  # the legacy integer pattern: every 2nd layer full
        {"sliding_window_pattern": 1},  # every layer full
        {"sliding_window_pattern": 8},  # longer than the stack: every layer slides
        {"layer_types": ["full_attention", "sliding_attention"] * 3 + ["full_attention"]},
        {"layer_types": ["sliding_attention"] * 7, "sliding_window_pattern": 2},  # layer_types wins
        *({"attention_bias": v} for v in BOTH),
        *TIE,
    ],
    "olmo2": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 1},
        {"head_dim": 12},  # q/k norms follow the projection width n·d_h
        *({"attention_bias": v} for v in BOTH),
        *TIE,
    ],
    "olmoe": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 1},
        {"head_dim": 8},  # = hidden/heads: the only head size OLMoE's q norm accepts
        *({"attention_bias": v} for v in BOTH),
        {"num_experts": ABSENT, "num_local_experts": 3},  # attribute_map alias
        {"num_experts": 1, "num_experts_per_tok": 1},
        {"num_experts_per_tok": 4},
        {"hidden_act": "gelu"},
        *TIE,
    ],
    "starcoder2": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 8},  # Starcoder2Config: 2
        {"num_key_value_heads": 4},
        {"head_dim": 12},
        {"head_dim": None},  # hidden/heads
        *({"use_bias": v} for v in BOTH),  # absent: true
        {"sliding_window": 6},
        {"sliding_window": None},
        {"hidden_act": "gelu"},
        *TIE,
    ],
    "granite": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 1},
        {"head_dim": 12},
        *({"attention_bias": v} for v in BOTH),
        *({"mlp_bias": v} for v in BOTH),
        # Granite-3 multipliers scale activations only
        {"embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.0078125, "logits_scaling": 8.0},
        *TIE,
    ],
    "cohere": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 1},
        {"head_dim": 12},
        *({"use_qk_norm": v} for v in BOTH),
        {"use_qk_norm": True, "num_key_value_heads": 1, "head_dim": 12},
        *({"attention_bias": v} for v in BOTH),
        *TIE,
    ],
    "ministral": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 16, "hidden_size": 64},  # MinistralConfig: 8
        {"num_key_value_heads": 1},
        {"head_dim": 12},
        {"sliding_window": ABSENT},  # MinistralConfig: 4096, every layer
        {"sliding_window": None},
        {"sliding_window": 6},
        {"sliding_window": 6, "layer_types": ["full_attention", "sliding_attention"]},
        *TIE,
    ],
    "smollm3": [
        {"num_key_value_heads": ABSENT, "num_attention_heads": 8},  # SmolLM3Config: 4
        {"num_key_value_heads": None},
        {"head_dim": 12},
        {"no_rope_layers": [1, 0, 0, 1]},
        {"no_rope_layer_interval": 2},
        {"use_sliding_window": True, "sliding_window": 6},  # the NoPE layer (3) slides
        {"use_sliding_window": True, "sliding_window": 6, "no_rope_layer_interval": 1},  # every layer NoPE and sliding
        {"use_sliding_window": True},  # sliding_window absent: none
        {"sliding_window": 6},  # use_sliding_window absent: false
        {"sliding_window": 6, "layer_types": ["sliding_attention", "full_attention"] * 2},
        *({"attention_bias": v} for v in BOTH),
        *({"mlp_bias": v} for v in BOTH),
        *TIE,
    ],
    "phi": [
        {"num_key_value_heads": ABSENT},
        {"num_key_value_heads": None},
        {"num_key_value_heads": 2},
        {"head_dim": 12},
        *({"qk_layernorm": v} for v in BOTH),
        {"qk_layernorm": True, "num_key_value_heads": 1},
        {"partial_rotary_factor": 0.4},
        {"partial_rotary_factor": 1.0},
        {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}},
        {"hidden_act": "gelu"},
        *TIE,  # the LM head's bias stays untied
    ],
}


def _cases():
    for family, base in BASES.items():
        yield pytest.param(with_fields({"model_type": family, **base}), id=f"{family}-base")
        for i, fields in enumerate(VARIANTS[family]):
            label = ",".join(f"{k}={'absent' if v is ABSENT else v}" for k, v in fields.items())
            yield pytest.param(with_fields({"model_type": family, **base}, **fields), id=f"{family}-{i}-{label}"[:120])


@pytest.mark.parametrize("data", list(_cases()))
def test_one_field_at_a_time(data):
    check(data)


def test_every_reader_is_exercised():
    """The table above covers every model_type the library reads (a new reader needs cases);
    the encoder-decoder and encoder-only readers have theirs in test_encdec.py."""
    from test_encdec import BASES as ENCODER_BASES

    covered = set(BASES) | {"RefinedWeb", "RefinedWebModel"} | set(ENCODER_BASES)
    assert set(READERS) == covered


# ---------------------------------------------------------------------------------------
# Random combinations.

def maybe(strategy, *, null: bool = False):
    """ABSENT, or a value from ``strategy`` (or None when the config class accepts null)."""
    options = [st.just(ABSENT), strategy] + ([st.none()] if null else [])
    return st.one_of(*options)


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


#: num_key_value_heads when the key is absent, per config class (None: the head count)
KV_CLASS_DEFAULT = {
    "mistral": 8, "mixtral": 8, "qwen2": 32, "qwen2_moe": 16, "qwen3": 32, "qwen3_moe": 4, "gemma": 16, "gemma2": 4,
    "gpt_oss": 8, "gemma3_text": 4, "starcoder2": 2, "ministral": 8, "smollm3": 4,
}
#: classes whose __post_init__ turns a null num_key_value_heads into the head count
KV_NULL_OK = {"llama", "qwen2", "qwen3", "phi3", "olmo", "olmo2", "olmoe", "granite", "cohere", "smollm3", "phi"}
#: classes that compute head_dim = hidden/heads when head_dim is null
HEAD_DIM_NULL_OK = {"llama", "mistral", "mixtral", "starcoder2"}
#: classes with a head_dim default of their own (absent -> this, not hidden/heads)
HEAD_DIM_DEFAULT = {"qwen3", "gemma", "gemma2", "gemma3_text", "gpt_oss"}
LLAMA_LIKE = ["llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "phi3", "olmo"]
NEW_LLAMA_LIKE = ["gpt_oss", "gemma3_text", "olmo2", "olmoe", "starcoder2", "granite", "cohere", "ministral", "smollm3", "phi"]
LAYER_TYPES = ["full_attention", "sliding_attention"]


@st.composite
def llama_like(draw, family: str) -> dict:
    kv = draw(st.sampled_from(["absent", "value"] + (["null"] if family in KV_NULL_OK else [])))
    if kv == "absent" and family in KV_CLASS_DEFAULT:
        heads = KV_CLASS_DEFAULT[family] * draw(st.sampled_from([1, 2]))
    else:
        heads = draw(st.sampled_from([1, 2, 4, 8]))
    n_layers = draw(st.integers(1, 4))
    data = {
        "model_type": family,
        "hidden_size": heads * draw(st.sampled_from([2, 4, 8])),
        "num_attention_heads": heads,
        "num_hidden_layers": n_layers,
        "vocab_size": draw(st.integers(8, 160)),
        "intermediate_size": draw(st.integers(1, 48)),
    }
    if family in ("phi3", "smollm3"):
        data["pad_token_id"] = 0  # the classes' defaults (32000, 128004) must be inside the vocabulary
    if kv == "null":
        data["num_key_value_heads"] = None
    elif kv == "value":
        data["num_key_value_heads"] = draw(st.sampled_from(divisors(heads)))
    head_dim = draw(maybe(st.sampled_from([2, 4, 6, 8]), null=family in HEAD_DIM_NULL_OK))
    if head_dim is ABSENT and family in HEAD_DIM_DEFAULT and heads > 4:
        head_dim = 4  # keep the 64/128/256 class defaults to small head counts
    if family == "olmoe":
        head_dim = ABSENT  # its q norm is hidden_size wide: head_dim is hidden/heads
    if family == "ministral" and head_dim in (ABSENT, None):
        head_dim = 4  # transformers 5.23 builds no Ministral without head_dim
    fields = {"head_dim": head_dim, "tie_word_embeddings": draw(maybe(st.booleans()))}
    if family in ("llama", "qwen3", "qwen3_moe", "gemma", "gemma2", "olmo", "gpt_oss", "gemma3_text", "olmo2", "olmoe", "granite", "cohere", "smollm3"):
        fields["attention_bias"] = draw(maybe(st.booleans()))
    if family in ("llama", "granite", "smollm3"):
        fields["mlp_bias"] = draw(maybe(st.booleans()))
    if family in ("mistral", "mixtral", "phi3", "ministral", "starcoder2", "gpt_oss", "gemma3_text"):
        fields["sliding_window"] = draw(maybe(st.integers(2, 12), null=True))
    if family in ("ministral", "gpt_oss", "gemma3_text") and isinstance(fields["sliding_window"], int):
        fields["layer_types"] = draw(maybe(st.lists(st.sampled_from(LAYER_TYPES), min_size=n_layers, max_size=n_layers)))
    if family == "gemma3_text":
        fields["sliding_window_pattern"] = draw(maybe(st.integers(1, 4)))
    if family == "starcoder2":
        fields["use_bias"] = draw(maybe(st.booleans()))
    if family == "cohere":
        fields["use_qk_norm"] = draw(maybe(st.booleans()))
    if family == "phi":
        fields["partial_rotary_factor"] = draw(maybe(st.sampled_from([0.25, 0.4, 0.5, 1.0])))
        fields["qk_layernorm"] = draw(maybe(st.booleans()))
        if fields["qk_layernorm"] is True:
            fields["head_dim"] = ABSENT  # Phi's q/k LayerNorms are hidden/heads wide
    if family == "smollm3":
        fields.update(
            use_sliding_window=draw(maybe(st.booleans())),
            sliding_window=draw(maybe(st.integers(2, 12), null=True)),
            no_rope_layer_interval=draw(maybe(st.integers(1, 4))),
            no_rope_layers=draw(maybe(st.lists(st.sampled_from([0, 1]), min_size=n_layers, max_size=n_layers))),
        )
    if family.startswith("qwen"):
        use = draw(maybe(st.booleans()))
        window = draw(maybe(st.integers(2, 12), null=True))
        fields.update(use_sliding_window=use, sliding_window=window, max_window_layers=draw(maybe(st.integers(0, n_layers + 1))))
        if family in ("qwen2", "qwen3") and use is True and isinstance(window, int) and draw(st.booleans()):
            fields["layer_types"] = draw(st.lists(st.sampled_from(["full_attention", "sliding_attention"]), min_size=n_layers, max_size=n_layers))
    if family == "gemma2":
        fields["sliding_window"] = draw(maybe(st.integers(2, 12)))
        fields["layer_types"] = draw(maybe(st.lists(st.sampled_from(["full_attention", "sliding_attention"]), min_size=n_layers, max_size=n_layers)))
    if family in ("mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "olmoe"):
        n_experts = draw(st.integers(1, 6))
        experts_key = {"mixtral": "num_local_experts", "qwen2_moe": "num_experts", "qwen3_moe": "num_experts", "gpt_oss": "num_local_experts", "olmoe": "num_experts"}[family]
        if family != "qwen2_moe" and draw(st.booleans()):
            experts_key = {"mixtral": "num_experts", "qwen3_moe": "num_local_experts", "gpt_oss": "num_experts", "olmoe": "num_local_experts"}[family]  # attribute_map aliases
        fields[experts_key] = n_experts
        fields["num_experts_per_tok"] = draw(st.integers(1, n_experts))
    if family in ("qwen2_moe", "qwen3_moe"):
        fields["moe_intermediate_size"] = draw(st.integers(1, 16))
        fields["decoder_sparse_step"] = draw(maybe(st.integers(1, 3)))
        fields["mlp_only_layers"] = draw(maybe(st.lists(st.integers(0, n_layers - 1), unique=True, max_size=n_layers), null=True))
    if family == "qwen2_moe":
        fields["shared_expert_intermediate_size"] = draw(st.integers(1, 24))
        fields["qkv_bias"] = draw(maybe(st.booleans()))
    return with_fields(data, **fields)


@st.composite
def deepseek(draw, family: str) -> dict:
    n_layers = draw(st.integers(1, 5))
    n_experts = draw(st.integers(1, 6))
    experts_key = draw(st.sampled_from(["n_routed_experts", "num_experts" if family == "deepseek_v2" else "num_local_experts"]))
    data = {
        "model_type": family,
        "hidden_size": draw(st.sampled_from([16, 24, 32])),
        "num_attention_heads": draw(st.sampled_from([1, 2, 4])),
        "num_hidden_layers": n_layers,
        "vocab_size": draw(st.integers(8, 160)),
        "intermediate_size": draw(st.integers(1, 32)),
        "kv_lora_rank": draw(st.integers(1, 16)),
        "qk_nope_head_dim": draw(st.integers(1, 8)),
        "qk_rope_head_dim": draw(st.sampled_from([2, 4, 6])),
        "v_head_dim": draw(st.integers(1, 8)),
        experts_key: n_experts,
        "num_experts_per_tok": draw(st.integers(1, n_experts)),
        "moe_intermediate_size": draw(st.integers(1, 16)),
    }
    if family == "deepseek_v3":
        data.update(n_group=1, topk_group=1)  # group-limited routing needs E divisible by n_group
    return with_fields(
        data,
        q_lora_rank=draw(maybe(st.integers(1, 16), null=True)),
        n_shared_experts=draw(maybe(st.integers(0, 3))),
        first_k_dense_replace=draw(maybe(st.integers(0, n_layers + 1))),
        moe_layer_freq=draw(maybe(st.integers(1, 3))),
        attention_bias=draw(maybe(st.booleans())),
        tie_word_embeddings=draw(maybe(st.booleans())),
    )


@st.composite
def gpt2(draw) -> dict:
    heads = draw(st.sampled_from([1, 2, 4]))
    names = draw(st.sampled_from([("n_embd", "n_head", "n_layer", "n_positions"), ("hidden_size", "num_attention_heads", "num_hidden_layers", "max_position_embeddings")]))
    data = dict(zip(names, (heads * draw(st.sampled_from([4, 8])), heads, draw(st.integers(1, 4)), draw(st.integers(1, 64)))))
    return with_fields(
        {"model_type": "gpt2", "vocab_size": draw(st.integers(8, 160)), **data},
        n_inner=draw(maybe(st.integers(1, 48), null=True)),
        tie_word_embeddings=draw(maybe(st.booleans())),
        activation_function=draw(maybe(st.sampled_from(["gelu_new", "gelu", "relu", "silu"]))),
    )


@st.composite
def gpt_neox(draw) -> dict:
    heads = draw(st.sampled_from([1, 2, 4]))
    return with_fields(
        {
            "model_type": "gpt_neox",
            "hidden_size": heads * draw(st.sampled_from([4, 8])),
            "num_attention_heads": heads,
            "num_hidden_layers": draw(st.integers(1, 4)),
            "vocab_size": draw(st.integers(8, 160)),
            "intermediate_size": draw(st.integers(1, 48)),
        },
        attention_bias=draw(maybe(st.booleans())),
        use_parallel_residual=draw(maybe(st.booleans())),
        tie_word_embeddings=draw(maybe(st.booleans())),
    )


@st.composite
def falcon(draw) -> dict:
    heads = draw(st.sampled_from([1, 2, 4, 8]))
    hidden = heads * draw(st.sampled_from([2, 4]))
    n_layers = draw(st.integers(1, 3))
    common = dict(
        vocab_size=draw(st.integers(8, 160)),
        bias=draw(maybe(st.booleans())),
        parallel_attn=draw(maybe(st.booleans())),
        num_ln_in_parallel_attn=draw(maybe(st.sampled_from([1, 2]), null=True)),
        ffn_hidden_size=draw(maybe(st.integers(1, 40), null=True)),
        alibi=draw(maybe(st.booleans())),
        tie_word_embeddings=draw(maybe(st.booleans())),
    )
    if draw(st.booleans()):  # a current "falcon" file
        new = draw(maybe(st.booleans()))
        kv = draw(maybe(st.sampled_from(divisors(heads)), null=True)) if new is True else draw(maybe(st.sampled_from([heads]), null=True))
        return with_fields(
            {"model_type": "falcon", "num_attention_heads": heads, "num_hidden_layers": n_layers},
            **{draw(st.sampled_from(["hidden_size", "n_embed"])): hidden},
            new_decoder_architecture=new,
            multi_query=draw(maybe(st.booleans())),
            num_kv_heads=kv,
            **common,
        )
    # a legacy custom-code file: n_head/n_layer, new decoder iff n_head_kv is present
    return with_fields(
        {"model_type": draw(st.sampled_from(["RefinedWeb", "RefinedWebModel"])), "hidden_size": hidden, "n_head": heads, "n_layer": n_layers},
        n_head_kv=draw(maybe(st.sampled_from(divisors(heads)))),
        multi_query=draw(maybe(st.booleans())),
        **common,
    )


SWEEP = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("family", LLAMA_LIKE)
@SWEEP
@given(data=st.data())
def test_sweep_llama_like(family, data):
    check(data.draw(llama_like(family)))


@pytest.mark.parametrize("family", NEW_LLAMA_LIKE)
@settings(SWEEP, max_examples=25)
@given(data=st.data())
def test_sweep_new_families(family, data):
    check(data.draw(llama_like(family)))


@pytest.mark.parametrize("family", ["deepseek_v2", "deepseek_v3"])
@SWEEP
@given(data=st.data())
def test_sweep_deepseek(family, data):
    check(data.draw(deepseek(family)))


@SWEEP
@given(config=st.one_of(gpt2(), gpt_neox()))
def test_sweep_gpt2_gpt_neox(config):
    check(config)


@settings(SWEEP, max_examples=80)
@given(config=falcon())
def test_sweep_falcon(config):
    check(config)


def test_deepseek_v2_mlp_bias_matches_transformers():
    """transformers puts biases on DeepSeek-V2's dense and shared-expert MLPs (not the
    routed experts) when ``mlp_bias`` is true: the count follows, first layer dense."""
    check({"model_type": "deepseek_v2", **BASES["deepseek_v2"], "mlp_bias": True, "first_k_dense_replace": 1})
