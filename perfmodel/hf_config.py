"""Hugging Face ``config.json`` -> :class:`Architecture`, one reader per ``model_type``.

Each reader follows the ``transformers`` modelling code of its family: which tensors
exist, which have biases, and the config class's defaults for fields a file may omit
(``num_key_value_heads`` -> heads, ``head_dim`` -> hidden/heads, tied embeddings…).
The sizes a model cannot be built without are required; a missing one is an error
naming the field.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path

from perfmodel.architecture import (
    FFN,
    Architecture,
    Attention,
    LatentAttention,
    Layer,
    MoE,
    Norm,
)
from perfmodel.errors import ConfigError, PerfmodelError, UnknownNameError
from perfmodel.files import parse_json, read_text

_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python": "gelu",
    "gelu_tanh": "gelu_tanh",
    "relu": "relu",
    "relu2": "relu2",
}

_MISSING = object()

#: fields that count layers; refused above MAX_LAYERS before any layer is built
LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "encoder_layers", "decoder_layers", "num_decoder_layers")
MAX_LAYERS = 10_000
#: the largest size any integer field may take (2**40: far above any real model's)
MAX_SIZE = 2**40


class Config:
    """A config dict with typed, validated field access; errors name the field."""

    def __init__(self, data: Mapping, model_type: str):
        self.data = dict(data)
        self.model_type = model_type
        #: every key the reader looked at (the fields this family knows)
        self.read: set[str] = {"model_type"}

    def absent(self, key: str) -> bool:
        """The file leaves ``key`` out. transformers config classes then use the class
        default, which may differ from what an explicit null means."""
        self.read.add(key)
        return key not in self.data

    def get(self, *keys: str, default=_MISSING):
        """The first of ``keys`` present (aliases), else ``default``; required if no default."""
        self.read.update(keys)
        for key in keys:
            if key in self.data and self.data[key] is not None:
                return self.data[key]
        if default is _MISSING:
            raise ConfigError(keys[0], f"missing required field for model_type {self.model_type!r}")
        return default

    def int(self, *keys: str, default=_MISSING, zero_ok: bool = False) -> int | None:
        value = self.get(*keys, default=default)
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(keys[0], f"must be an integer, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(keys[0], f"must be an integer, got {_brief(value)}")
        if value < 0 or (value == 0 and not zero_ok):
            raise ConfigError(keys[0], f"must be {'non-negative' if zero_ok else 'positive'}, got {_brief(value)}")
        if value > MAX_SIZE:
            raise ConfigError(keys[0], f"{_brief(value)} is out of range (at most 2**40)")
        if keys[0] in LAYER_FIELDS and value > MAX_LAYERS:
            raise ConfigError(keys[0], f"{int(value):,} layers is more than the {MAX_LAYERS:,} this tool builds")
        return int(value)

    def bool(self, *keys: str, default=_MISSING) -> bool:
        value = self.get(*keys, default=default)
        if not isinstance(value, bool):
            raise ConfigError(keys[0], f"must be true or false, got {value!r}")
        return value

    def activation(self, *keys: str, default=_MISSING) -> str:
        value = self.get(*keys, default=default)
        try:
            return _ACTIVATIONS[value]
        except (KeyError, TypeError):
            raise ConfigError(keys[0], f"unsupported activation {value!r} (known: {', '.join(_ACTIVATIONS)})") from None

    def nullable_int(self, key: str, class_default: int) -> int | None:
        """A field whose config class has a default but accepts null: absent means
        ``class_default``, an explicit null means none (``sliding_window``…)."""
        return class_default if self.absent(key) else self.int(key, default=None)

    def int_list(self, key: str) -> list[int]:
        value = self.get(key, default=None) or []
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(key, f"must be a list of layer indices, got {value!r}")
        return value

    def head_dim(self, hidden: int, heads: int, *, default: int | None = None) -> int:
        """``head_dim`` if given (or the family default), else hidden/heads, which must divide."""
        explicit = self.int("head_dim", default=default)
        return explicit if explicit is not None else derived_head_dim(hidden, heads)


def _brief(value) -> str:
    """``repr(value)``, cut short for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + "…" + text[-10:]


def derived_head_dim(hidden: int, heads: int) -> int:
    """hidden/heads, for families whose head size is not a config field; must divide."""
    if hidden % heads:
        raise ConfigError("num_attention_heads", f"hidden_size={hidden} is not divisible by num_attention_heads={heads}")
    return hidden // heads


def _rotary_dim(c: Config, head_dim: int, order: tuple[str, ...], default: float) -> int | None:
    """Features of each head RoPE rotates, ``int(head_dim · partial_rotary_factor)`` as
    transformers computes it; None when all. ``order``: where each config class looks for
    the factor first: ``"rope"`` (inside ``rope_parameters``/``rope_scaling``) or a
    top-level key (``partial_rotary_factor``, GPT-NeoX's ``rotary_pct``)."""
    rope = c.get("rope_parameters", "rope_scaling", default={})
    nested = rope.get("partial_rotary_factor") if isinstance(rope, dict) else None
    factor, field = default, "partial_rotary_factor"
    for key in order:
        found = nested if key == "rope" else c.get(key, default=None)
        if found is not None:
            factor, field = found, ("partial_rotary_factor" if key == "rope" else key)
            break
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ConfigError(field, f"must be in (0, 1], got {factor!r}")
    dims = int(head_dim * factor)
    if dims < 1:
        raise ConfigError(field, f"rotates no feature of a {head_dim}-wide head")
    return None if dims == head_dim else dims


Reader = Callable[[Config], dict]
READERS: dict[str, Reader] = {}


def reader(*model_types: str):
    """Register a reader for ``model_types``; a second reader for a type raises."""

    def register(fn: Reader) -> Reader:
        for model_type in model_types:
            if model_type in READERS:
                raise ValueError(f"two readers for model_type {model_type!r}")
            READERS[model_type] = fn
        return fn

    return register


def _layer_kinds(c: Config, n_layers: int, window: int | None, windowed: Callable[[int], bool]) -> list[int | None]:
    """Per-layer sliding window: ``layer_types`` if the file has it, else the family rule."""
    types = c.get("layer_types", default=None)
    if types is None:
        return [window if window and windowed(i) else None for i in range(n_layers)]
    if not isinstance(types, list) or len(types) != n_layers:
        raise ConfigError("layer_types", f"must list one type per layer ({n_layers}), got {types!r}")
    out = []
    for kind in types:
        if kind == "full_attention":
            out.append(None)
        elif kind == "sliding_attention":
            if not window:
                raise ConfigError("sliding_window", "layer_types has sliding layers but no sliding_window")
            out.append(window)
        else:
            raise ConfigError("layer_types", f"unsupported layer type {kind!r}")
    return out


def _llama_like(
    c: Config,
    *,
    qkv_bias: bool,
    o_bias: bool,
    mlp_bias: bool = False,
    tie_default: bool = False,
    head_dim_default: int | None = None,
    norm: Norm = Norm("rms"),
    norms=("attn.norm", "ffn.norm"),
    kv_default: int | None = None,
    qk_norm: bool = False,
    fused: bool = False,
    activation_keys=("hidden_act",),
    activation_default: str = "silu",
    windows: list[int | None] | None = None,
    moe: Callable[[int], MoE | None] = lambda i: None,
    gated: bool = True,
    parallel: bool = False,
    rope: Callable[[int], bool] = lambda i: True,
    **attention,
) -> dict:
    """The decoder most families share: RoPE attention, gated FFN (or MoE), pre-norms.

    ``kv_default``: the config class's ``num_key_value_heads`` when the key is absent
    (None: the head count, which is also what an explicit null means). ``rope``: which
    layers rotate queries and keys; ``attention``: further :class:`Attention` fields."""
    hidden = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    n_layers = c.int("num_hidden_layers")
    if kv_default is not None and c.absent("num_key_value_heads"):
        kv_heads = kv_default
    else:
        kv_heads = c.int("num_key_value_heads", default=heads)
    head_dim = c.head_dim(hidden, heads, default=head_dim_default)
    activation = c.activation(*activation_keys, default=activation_default)
    windows = windows or [None] * n_layers
    dense = None
    layers = []
    for i in range(n_layers):
        layer_attention = Attention(
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            sliding_window=windows[i],
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            fused_qkv=fused,
            qk_norm=qk_norm,
            rope=rope(i),
            **attention,
        )
        ffn = moe(i)
        if ffn is None:
            dense = dense or FFN(
                c.int("intermediate_size"), gated=gated, activation=activation, bias=mlp_bias, fused_gate_up=fused
            )
            ffn = dense
        layers.append(Layer(layer_attention, ffn, norm=norm, norms=norms, parallel=parallel))
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=tuple(layers),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=tie_default),
        final_norm=norm,
    )


def _qwen_windows(c: Config, rule: Callable[[int, int], bool]) -> list[int | None]:
    """Qwen configs: windows only with ``use_sliding_window``; an absent ``sliding_window``
    is the class default 4096, an explicit null means none."""
    n_layers = c.int("num_hidden_layers")
    window = None
    if c.bool("use_sliding_window", default=False):
        window = c.nullable_int("sliding_window", 4096)
    max_window_layers = c.int("max_window_layers", default=28, zero_ok=True) if window else 0
    return _layer_kinds(c, n_layers, window, lambda i: rule(i, max_window_layers))


@reader("llama", "granite")
def _llama(c: Config) -> dict:
    """Llama, and Granite: Llama's tensors; its embedding, residual, attention and logit
    multipliers scale activations and change no count."""
    bias = c.bool("attention_bias", default=False)
    return _llama_like(c, qkv_bias=bias, o_bias=bias, mlp_bias=c.bool("mlp_bias", default=False))


@reader("mistral", "ministral")
def _mistral(c: Config) -> dict:
    """Mistral and Ministral. Both config classes default ``sliding_window`` to 4096 (the
    file says null when a model has none) on every layer unless ``layer_types`` says
    otherwise, and ``num_key_value_heads`` to 8."""
    window = c.nullable_int("sliding_window", 4096)
    n_layers = c.int("num_hidden_layers")
    windows = _layer_kinds(c, n_layers, window, lambda i: True)
    return _llama_like(c, qkv_bias=False, o_bias=False, kv_default=8, windows=windows)


def _routed(c: Config, experts_keys: tuple[str, ...], width_key: str, **shared) -> MoE:
    """Routed experts; ``experts_keys``: the field and its ``attribute_map`` alias."""
    return MoE(
        num_experts=c.int(*experts_keys),
        num_experts_per_tok=c.int("num_experts_per_tok"),
        moe_intermediate_size=c.int(width_key),
        activation=c.activation("hidden_act", default="silu"),
        **shared,
    )


@reader("mixtral")
def _mixtral(c: Config) -> dict:
    n_layers = c.int("num_hidden_layers")
    windows = _layer_kinds(c, n_layers, c.int("sliding_window", default=None), lambda i: True)
    experts = _routed(c, ("num_local_experts", "num_experts"), "intermediate_size")
    return _llama_like(c, qkv_bias=False, o_bias=False, kv_default=8, windows=windows, moe=lambda i: experts)


@reader("qwen2")
def _qwen2(c: Config) -> dict:
    windows = _qwen_windows(c, lambda i, m: i >= m)
    return _llama_like(c, qkv_bias=True, o_bias=False, kv_default=32, windows=windows)


def _sparse_layers(c: Config, experts: MoE) -> Callable[[int], MoE | None]:
    """Qwen-MoE layer rule: MoE unless listed in mlp_only_layers or off the decoder_sparse_step."""
    dense_layers = set(c.int_list("mlp_only_layers"))
    step = c.int("decoder_sparse_step", default=1)
    return lambda i: experts if i not in dense_layers and (i + 1) % step == 0 else None


@reader("qwen2_moe")
def _qwen2_moe(c: Config) -> dict:
    shared = c.int("shared_expert_intermediate_size")
    experts = _routed(
        c,
        ("num_experts",),
        "moe_intermediate_size",
        n_shared_experts=1,
        shared_expert_intermediate_size=shared,
        shared_expert_gate=True,
    )
    windows = _qwen_windows(c, lambda i, m: bool((i + 1) % 2) and i < m)
    bias = c.bool("qkv_bias", default=True)
    return _llama_like(c, qkv_bias=bias, o_bias=False, kv_default=16, windows=windows, moe=_sparse_layers(c, experts))


@reader("qwen3")
def _qwen3(c: Config) -> dict:
    bias = c.bool("attention_bias", default=False)
    windows = _qwen_windows(c, lambda i, m: i >= m)
    return _llama_like(
        c, qkv_bias=bias, o_bias=bias, qk_norm=True, head_dim_default=128, kv_default=32, windows=windows
    )


@reader("qwen3_moe")
def _qwen3_moe(c: Config) -> dict:
    bias = c.bool("attention_bias", default=False)
    experts = _routed(c, ("num_experts", "num_local_experts"), "moe_intermediate_size")
    windows = _qwen_windows(c, lambda i, m: True)
    return _llama_like(
        c, qkv_bias=bias, o_bias=bias, qk_norm=True, kv_default=4, windows=windows, moe=_sparse_layers(c, experts)
    )


@reader("gemma")
def _gemma(c: Config) -> dict:
    bias = c.bool("attention_bias", default=False)
    return _llama_like(
        c,
        qkv_bias=bias,
        o_bias=bias,
        tie_default=True,
        head_dim_default=256,
        kv_default=16,
        activation_keys=("hidden_act",),  # GemmaMLP reads hidden_act (default gelu_pytorch_tanh)
        activation_default="gelu_pytorch_tanh",
    )


#: what Gemma 2 and 3 share: tied head, 256-wide heads, 4 KV heads by default, the MLP
#: reading ``hidden_activation`` only, and a norm before and after each half-block
_GEMMA_2_3 = dict(
    tie_default=True,
    head_dim_default=256,
    kv_default=4,
    activation_keys=("hidden_activation",),
    activation_default="gelu_pytorch_tanh",
    norms=("attn.norm", "attn.post_norm", "ffn.norm", "ffn.post_norm"),
)


@reader("gemma2")
def _gemma2(c: Config) -> dict:
    bias = c.bool("attention_bias", default=False)
    n_layers = c.int("num_hidden_layers")
    windows = _layer_kinds(c, n_layers, c.nullable_int("sliding_window", 4096), lambda i: bool((i + 1) % 2))
    return _llama_like(c, qkv_bias=bias, o_bias=bias, windows=windows, **_GEMMA_2_3)


@reader("phi3")
def _phi3(c: Config) -> dict:
    n_layers = c.int("num_hidden_layers")
    windows = _layer_kinds(c, n_layers, c.int("sliding_window", default=None), lambda i: True)
    heads = c.int("num_attention_heads")
    rotary = _rotary_dim(c, c.head_dim(c.int("hidden_size"), heads), ("rope", "partial_rotary_factor"), 1.0)
    return _llama_like(c, qkv_bias=False, o_bias=False, fused=True, windows=windows, rotary_dim=rotary)


@reader("olmo")
def _olmo(c: Config) -> dict:
    bias = c.bool("attention_bias", default=False)
    return _llama_like(c, qkv_bias=bias, o_bias=bias, norm=Norm("nonparametric"))


@reader("olmo2")
def _olmo2(c: Config) -> dict:
    """OLMo-2: RMSNorm over the whole q and k projections (``n·d_h`` weights), and norms
    after attention and after the MLP only (none before)."""
    bias = c.bool("attention_bias", default=False)
    return _llama_like(
        c,
        qkv_bias=bias,
        o_bias=bias,
        qk_norm=True,
        qk_norm_weight="projection",
        norms=("attn.post_norm", "ffn.post_norm"),
    )


@reader("olmoe")
def _olmoe(c: Config) -> dict:
    """OLMoE: OLMo-2's whole-projection q/k norms with pre-norms, every layer MoE.
    transformers sizes the q norm ``hidden_size`` wide, so ``head_dim`` must be hidden/heads."""
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads")
    if c.int("head_dim", default=None) not in (None, derived_head_dim(hidden, heads)):
        raise ConfigError("head_dim", f"OLMoE's q/k norms need head_dim = hidden_size/num_attention_heads = {hidden // heads}")
    bias = c.bool("attention_bias", default=False)
    experts = _routed(c, ("num_experts", "num_local_experts"), "intermediate_size")
    return _llama_like(
        c, qkv_bias=bias, o_bias=bias, qk_norm=True, qk_norm_weight="projection", moe=lambda i: experts
    )


@reader("gemma3_text")
def _gemma3_text(c: Config) -> dict:
    """Gemma-3's decoder: Gemma-2's four norms plus per-head q/k RMSNorms. Without
    ``layer_types``, every ``sliding_window_pattern``-th layer (default 6) is full, the
    others slide over ``sliding_window`` (default 4096)."""
    if c.bool("use_bidirectional_attention", default=False):
        raise ConfigError("use_bidirectional_attention", "bidirectional (encoder) Gemma-3 is not supported")
    bias = c.bool("attention_bias", default=False)
    n_layers = c.int("num_hidden_layers")
    pattern = c.int("sliding_window_pattern", default=6)
    windows = _layer_kinds(c, n_layers, c.nullable_int("sliding_window", 4096), lambda i: bool((i + 1) % pattern))
    return _llama_like(c, qkv_bias=bias, o_bias=bias, qk_norm=True, windows=windows, **_GEMMA_2_3)


@reader("starcoder2")
def _starcoder2(c: Config) -> dict:
    """StarCoder2: GQA with RoPE, LayerNorms with bias, a plain MLP; ``use_bias`` puts
    biases on every projection; one ``sliding_window`` (default none) for every layer."""
    bias = c.bool("use_bias", default=True)
    n_layers = c.int("num_hidden_layers")
    windows = _layer_kinds(c, n_layers, c.int("sliding_window", default=None), lambda i: True)
    norm = Norm("layer", bias=True)
    return _llama_like(
        c,
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=bias,
        gated=False,
        tie_default=True,
        kv_default=2,
        norm=norm,
        activation_default="gelu_pytorch_tanh",
        windows=windows,
    )


@reader("cohere")
def _cohere(c: Config) -> dict:
    """Command-R: a parallel block (one bias-free LayerNorm feeds attention and MLP, one
    residual add); ``use_qk_norm``: bias-free LayerNorms on each head of q and k, with a
    weight per head."""
    bias = c.bool("attention_bias", default=False)
    return _llama_like(
        c,
        qkv_bias=bias,
        o_bias=bias,
        tie_default=True,
        norm=Norm("layer"),
        norms=("attn.norm",),
        parallel=True,
        qk_norm=c.bool("use_qk_norm", default=False),
        qk_norm_kind=Norm("layer"),
        qk_norm_weight="projection",
    )


@reader("smollm3")
def _smollm3(c: Config) -> dict:
    """SmolLM3: Llama with NoPE layers. ``no_rope_layers`` (1: RoPE) defaults to every
    ``no_rope_layer_interval``-th layer (default 4) without; with ``use_sliding_window``
    the NoPE layers slide (transformers' SmolLM3Config rule) unless ``layer_types`` is given."""
    n_layers = c.int("num_hidden_layers")
    interval = c.int("no_rope_layer_interval", default=4)
    has_rope = c.get("no_rope_layers", default=None)
    if has_rope is None:
        has_rope = [(i + 1) % interval != 0 for i in range(n_layers)]
    elif not isinstance(has_rope, list) or len(has_rope) != n_layers or any(v not in (0, 1) for v in has_rope):
        raise ConfigError("no_rope_layers", f"must list 0 or 1 for each of the {n_layers} layers, got {has_rope!r}")
    use = c.bool("use_sliding_window", default=False)
    windows = _layer_kinds(c, n_layers, c.int("sliding_window", default=None), lambda i: use and not has_rope[i])
    bias = c.bool("attention_bias", default=False)
    return _llama_like(
        c,
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=c.bool("mlp_bias", default=False),
        tie_default=True,
        kv_default=4,
        windows=windows,
        rope=lambda i: bool(has_rope[i]),
    )


@reader("gpt_oss")
def _gpt_oss(c: Config) -> dict:
    """gpt-oss: MoE every layer with biased experts and router, a learned attention sink per
    head, biased attention (``attention_bias``, default true), sliding (default 128) and
    full layers alternating from layer 0 unless ``layer_types`` says otherwise. The experts'
    clamped SwiGLU (``swiglu_alpha``, ``swiglu_limit``) is costed as a SiLU-gated unit."""
    n_layers = c.int("num_hidden_layers")
    windows = _layer_kinds(c, n_layers, c.nullable_int("sliding_window", 128), lambda i: bool((i + 1) % 2))
    experts = MoE(
        num_experts=c.int("num_local_experts", "num_experts"),
        num_experts_per_tok=c.int("num_experts_per_tok"),
        moe_intermediate_size=c.int("intermediate_size"),
        expert_bias=True,
        router_bias=True,
    )
    bias = c.bool("attention_bias", default=True)
    return _llama_like(
        c,
        qkv_bias=bias,
        o_bias=bias,
        head_dim_default=64,
        kv_default=8,
        windows=windows,
        moe=lambda i: experts,
        sinks=True,
    )


#: DeepseekV2Config / DeepseekV3Config defaults for keys a file leaves out
_DEEPSEEK_DEFAULTS = {
    "deepseek_v2": {"n_shared_experts": 2, "first_k_dense_replace": 0, "experts_alias": "num_experts"},
    "deepseek_v3": {"n_shared_experts": 1, "first_k_dense_replace": 3, "experts_alias": "num_local_experts"},
}


@reader("deepseek_v2", "deepseek_v3")
def _deepseek(c: Config) -> dict:
    """MLA + MoE. Layers from ``first_k_dense_replace`` on are MoE; transformers 5.23
    does not read ``moe_layer_freq`` (every public DeepSeek config sets it to 1)."""
    defaults = _DEEPSEEK_DEFAULTS[c.model_type]
    hidden = c.int("hidden_size")
    n_layers = c.int("num_hidden_layers")
    activation = c.activation("hidden_act", default="silu")
    bias = c.bool("attention_bias", default=False)
    attention = LatentAttention(
        num_attention_heads=c.int("num_attention_heads"),
        kv_lora_rank=c.int("kv_lora_rank"),
        qk_nope_head_dim=c.int("qk_nope_head_dim"),
        qk_rope_head_dim=c.int("qk_rope_head_dim"),
        v_head_dim=c.int("v_head_dim"),
        # absent: the class default 1536; null: queries projected directly (V2-Lite)
        q_lora_rank=c.nullable_int("q_lora_rank", 1536),
        bias=bias,
    )
    # DeepseekV2MLP (dense and shared experts) takes mlp_bias; V3's MLPs have none
    mlp_bias = c.model_type == "deepseek_v2" and c.bool("mlp_bias", default=False)
    dense = None
    experts = MoE(
        num_experts=c.int("n_routed_experts", defaults["experts_alias"]),
        num_experts_per_tok=c.int("num_experts_per_tok"),
        moe_intermediate_size=c.int("moe_intermediate_size"),
        n_shared_experts=c.int("n_shared_experts", default=defaults["n_shared_experts"], zero_ok=True),
        shared_expert_intermediate_size=c.int("moe_intermediate_size"),
        shared_expert_bias=mlp_bias,
        activation=activation,
    )
    first_dense = c.int("first_k_dense_replace", default=defaults["first_k_dense_replace"], zero_ok=True)
    layers = []
    for i in range(n_layers):
        if i >= first_dense:
            ffn = experts
        else:
            dense = dense or FFN(c.int("intermediate_size"), activation=activation, bias=mlp_bias)
            ffn = dense
        layers.append(Layer(attention, ffn, norm=Norm("rms")))
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=tuple(layers),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=False),
        final_norm=Norm("rms"),
    )


@reader("gpt2")
def _gpt2(c: Config) -> dict:
    if c.get("add_cross_attention", default=False):
        raise ConfigError("add_cross_attention", "GPT-2 with cross-attention is not supported")
    hidden = c.int("n_embd", "hidden_size")
    heads = c.int("n_head", "num_attention_heads")
    head_dim = derived_head_dim(hidden, heads)
    attention = Attention(heads, heads, head_dim, qkv_bias=True, o_bias=True, fused_qkv=True, rope=False)
    ffn = FFN(
        c.int("n_inner", default=None) or 4 * hidden,
        gated=False,
        activation=c.activation("activation_function", default="gelu_new"),
        bias=True,
    )
    norm = Norm("layer", bias=True)
    layer = Layer(attention, ffn, norm=norm)
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(layer,) * c.int("n_layer", "num_hidden_layers"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        final_norm=norm,
        max_position_embeddings=c.int("n_positions", "max_position_embeddings"),
    )


@reader("gpt_neox")
def _gpt_neox(c: Config) -> dict:
    hidden = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    bias = c.bool("attention_bias", default=True)
    head_dim = derived_head_dim(hidden, heads)
    rotary = _rotary_dim(c, head_dim, ("rope", "rotary_pct"), 0.25)  # GPTNeoXConfig: rope_parameters first
    attention = Attention(heads, heads, head_dim, qkv_bias=bias, o_bias=bias, fused_qkv=True, rotary_dim=rotary)
    ffn = FFN(c.int("intermediate_size"), gated=False, activation=c.activation("hidden_act", default="gelu"), bias=True)
    norm = Norm("layer", bias=True)
    layer = Layer(attention, ffn, norm=norm, parallel=c.bool("use_parallel_residual", default=True))
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(layer,) * c.int("num_hidden_layers"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=False),
        final_norm=norm,
    )


@reader("gptj")
def _gptj(c: Config) -> dict:
    """GPT-J (``GPTJForCausalLM``): a parallel block under one LayerNorm (``ln_1``);
    separate q/k/v and ``out_proj`` without biases; a plain biased MLP (``fc_in``/``fc_out``,
    ``n_inner``, null: 4·n_embd); RoPE on the first ``rotary_dim`` features of each head
    (GPTJConfig default 64; rotary_dim = head size rotates all of it); no learned
    positions; final ``ln_f``; an LM head with a bias, untied by default."""
    hidden = c.int("n_embd", "hidden_size")
    heads = c.int("n_head", "num_attention_heads")
    head_dim = derived_head_dim(hidden, heads)
    if not c.absent("rotary_dim") and c.data["rotary_dim"] is None:
        raise ConfigError("rotary_dim", "must be an integer (transformers' GPTJConfig refuses null)")
    rotary = c.int("rotary_dim", default=64)
    if rotary > head_dim:
        raise ConfigError("rotary_dim", f"rotates {rotary} features of a {head_dim}-wide head")
    attention = Attention(heads, heads, head_dim, rotary_dim=None if rotary == head_dim else rotary)
    ffn = FFN(
        c.int("n_inner", default=None) or 4 * hidden,
        gated=False,
        activation=c.activation("activation_function", default="gelu_new"),
        bias=True,
    )
    norm = Norm("layer", bias=True)
    layer = Layer(attention, ffn, norm=norm, norms=("attn.norm",), parallel=True)
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(layer,) * c.int("n_layer", "num_hidden_layers"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=False),
        final_norm=norm,
        lm_head_bias=True,
    )


@reader("phi")
def _phi(c: Config) -> dict:
    """Phi-1/1.5/2: a parallel block under one LayerNorm, biases on q/k/v, ``dense``, the
    plain MLP and the LM head; RoPE on ``partial_rotary_factor`` (default 0.5) of each
    head; ``qk_layernorm``: LayerNorms with bias, one weight all heads share."""
    hidden, heads = c.int("hidden_size"), c.int("num_attention_heads")
    head_dim = c.head_dim(hidden, heads)
    qk_norm = c.bool("qk_layernorm", default=False)
    if qk_norm and head_dim != derived_head_dim(hidden, heads):
        raise ConfigError("head_dim", "Phi's q/k LayerNorms are hidden_size/num_attention_heads wide")
    norm = Norm("layer", bias=True)
    fields = _llama_like(
        c,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        gated=False,
        norm=norm,
        norms=("attn.norm",),
        parallel=True,
        activation_default="gelu_new",
        qk_norm=qk_norm,
        qk_norm_kind=norm,
        rotary_dim=_rotary_dim(c, head_dim, ("partial_rotary_factor", "rope"), 0.5),
    )
    return dict(fields, lm_head_bias=True)


@reader("falcon", "RefinedWeb", "RefinedWebModel")
def _falcon(c: Config) -> dict:
    hidden = c.int("hidden_size", "n_embed")
    heads = c.int("num_attention_heads", "n_head")
    head_dim = derived_head_dim(hidden, heads)
    # Legacy custom-code files (RefinedWeb, RefinedWebModel): transformers' converter
    # (convert_custom_code_checkpoint.py) makes them the new decoder iff n_head_kv is given.
    if c.model_type == "falcon":
        new_arch = c.bool("new_decoder_architecture", default=False)
    else:
        new_arch = not c.absent("n_head_kv")
    if new_arch:
        kv_heads = c.int("num_kv_heads", "n_head_kv", default=heads)
    elif c.bool("multi_query", default=True):
        kv_heads = 1
    else:
        kv_heads = heads
    bias = c.bool("bias", default=False)
    parallel = c.bool("parallel_attn", default=True)
    if not parallel:
        norms = ("attn.norm", "ffn.norm")
    elif c.int("num_ln_in_parallel_attn", default=2 if new_arch else None) == 2:
        norms = ("attn.norm", "ffn.norm")
    else:
        norms = ("attn.norm",)
    alibi = c.bool("alibi", default=False)
    attention = Attention(heads, kv_heads, head_dim, qkv_bias=bias, o_bias=bias, fused_qkv=True, rope=not alibi)
    ffn = FFN(
        c.int("ffn_hidden_size", default=None) or 4 * hidden,
        gated=False,
        activation=c.activation("activation", default="gelu"),
        bias=bias,
    )
    norm = Norm("layer", bias=True)
    layer = Layer(attention, ffn, norm=norm, norms=norms, parallel=parallel)
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(layer,) * c.int("num_hidden_layers", "n_layer"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        final_norm=norm,
    )


#: legacy model_type spellings and the family whose reader takes them
_LEGACY = {"RefinedWeb": "falcon", "RefinedWebModel": "falcon"}


def family_of(model_type: str) -> str:
    """The family a config's ``model_type`` belongs to (legacy spellings normalised)."""
    return _LEGACY.get(model_type, model_type)


def parse_value(text: str):
    """A ``--set`` value: JSON (numbers, true/false, null, lists) or else a plain string;
    NaN, Infinity and out-of-range numbers are refused."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_checked_int)
    except json.JSONDecodeError:
        return text
    except RecursionError:
        raise PerfmodelError(f"--set value {_brief(text)}: nested too deeply") from None


def _refuse_constant(name: str):
    raise PerfmodelError(f"--set value {name} is not a finite number")


def _checked_int(text: str) -> int:
    if len(text.lstrip("-")) > 30:
        raise PerfmodelError(f"--set value: an integer of {len(text.lstrip('-')):,} digits is out of range")
    return int(text)


#: prefix of a --set key the reader need not read (``--set +my_field=1``)
FORCE = "+"


def apply_overrides(data: Mapping, overrides: Mapping[str, object]) -> dict:
    """A copy of ``data`` with ``overrides`` applied (``KEY=VALUE`` pairs already parsed;
    a leading ``+`` on a key is dropped: see :func:`check_overrides`)."""
    out = dict(data)
    for key, value in overrides.items():
        if not key or key == FORCE:
            raise PerfmodelError("--set: empty key")
        out[key.removeprefix(FORCE)] = value
    return out


def check_overrides(overrides: Mapping[str, object], known: set[str], model_type: str) -> None:
    """Refuse an override key that is neither in the config file nor read by the
    family's reader (a typo would otherwise change nothing), with close matches.
    A key written ``+KEY`` is set without this check."""
    for key in overrides:
        if key.startswith(FORCE) or key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "not a field this family reads"
        raise PerfmodelError(
            f"--set {key}: unknown field for model_type {model_type!r}; {hint} (--set +{key}=VALUE sets it anyway)"
        )


def from_config(
    data: Mapping, *, name: str = "custom", source: str = "", overrides: Mapping[str, object] | None = None
) -> Architecture:
    """Build an :class:`Architecture` from a config dict (the parsed ``config.json``),
    with ``overrides`` (``--set`` pairs) applied first; an override key neither the file
    nor the family's reader knows is refused (:func:`check_overrides`)."""
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"must be a JSON object, got {type(data).__name__}")
    original = set(data)
    if overrides:
        data = apply_overrides(data, overrides)
    model_type = data.get("model_type")
    if model_type is None:
        if "text_config" in data:
            raise ConfigError("model_type", "multimodal configs (text_config) are not supported")
        raise ConfigError("model_type", "missing required field")
    if not isinstance(model_type, str):
        raise ConfigError("model_type", f"must be a string, got {_brief(model_type)}")
    if model_type not in READERS:
        raise UnknownNameError("model_type", model_type, READERS)
    config = Config(data, model_type)
    fields = READERS[model_type](config)
    if fields.get("max_position_embeddings") is None:
        fields.setdefault("trained_context", config.int("max_position_embeddings", "n_positions", default=None))
    if overrides:
        check_overrides(overrides, config.read | original, model_type)
    family = family_of(model_type)
    return Architecture(name=name, family=family, source=source, **fields)


def read_config_file(path: str | Path) -> dict:
    """Parse a ``config.json`` (or a folder holding one) into a dict; one-line errors."""
    if not str(path).strip():
        raise PerfmodelError("--model: empty name; give a preset or a config.json path")
    path = Path(path)
    try:
        if path.is_dir():
            path = path / "config.json"
    except OSError:
        pass  # a name too long to stat: read_text says so
    data = parse_json(read_text(path, "model config"), str(path))
    if not isinstance(data, dict):
        raise PerfmodelError(f"{path}: a config must be a JSON object")
    return data


# the encoder-decoder and encoder-only readers register themselves with ``reader``
from perfmodel import hf_seq2seq  # noqa: E402,F401
