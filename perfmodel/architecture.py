"""The frozen, validated description of a model: embeddings, the layer stack, the head.

Field names follow the Hugging Face config keys they come from (``num_attention_heads``,
``sliding_window``, ``kv_lora_rank``…) so an error names the field a user can fix.
Layers may differ (dense vs MoE FFN, full vs sliding-window attention); equal layers
are grouped, and each group repeats ``L_<kind>`` times in the formulas. Encoder-decoder
and encoder-only models add an :class:`Encoder` (its stack repeats ``L_enc`` times).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

from sympy import Symbol

from perfmodel import symbols as S
from perfmodel.errors import ConfigError

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "relu2")


def _positive(owner: str, name: str, value, *, zero_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {value!r} ({owner})")
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(name, f"must be {'non-negative' if zero_ok else 'positive'}, got {value} ({owner})")
    if value > 10**9:
        raise ConfigError(name, f"{value} is absurdly large ({owner})")


@dataclass(frozen=True)
class Norm:
    """A normalisation layer: RMSNorm, LayerNorm (optionally with bias), or a parameter-free LayerNorm."""

    kind: str = "rms"  # "rms" | "layer" | "nonparametric"
    bias: bool = False

    def __post_init__(self):
        if self.kind not in ("rms", "layer", "nonparametric"):
            raise ConfigError("norm", f"unknown norm kind {self.kind!r}")
        if self.bias and self.kind != "layer":
            raise ConfigError("norm", "only LayerNorm carries a bias")


@dataclass(frozen=True)
class Attention:
    """Multi-head attention with ``num_key_value_heads`` K/V heads: MHA, GQA or MQA."""

    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    sliding_window: int | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    fused_qkv: bool = False
    qk_norm: bool = False  # norms on the queries and keys (Qwen3, Gemma3, OLMo2, Cohere)
    #: the q/k norms' kind: RMSNorm, or LayerNorm (Cohere: no bias)
    qk_norm_kind: Norm = Norm("rms")
    #: "head": one d_h weight every head shares (Qwen3, Gemma3); "projection": a weight per
    #: feature of the whole projection, n·d_h (OLMo2/OLMoE normalise it whole; Cohere per head)
    qk_norm_weight: str = "head"
    rope: bool = True  # rotary embedding on queries and keys (False: learned positions, ALiBi, NoPE layers)
    rotary_dim: int | None = None  # RoPE on each head's first rotary_dim features only (None: all d_h)
    sinks: bool = False  # a learned sink logit per head joins every softmax (gpt-oss)
    #: False: bidirectional self-attention (an encoder), nothing cached; every query sees every key
    causal: bool = True
    #: a learned bias per head and relative-position bucket is added to the scores (T5)
    position_bias: bool = False
    #: a bias on k_proj; None: as ``qkv_bias`` (Whisper: q and v biased, k not)
    k_bias: bool | None = None

    def __post_init__(self):
        for f in ("num_attention_heads", "num_key_value_heads", "head_dim"):
            _positive("attention", f, getattr(self, f))
        if self.sliding_window is not None:
            _positive("attention", "sliding_window", self.sliding_window)
        if self.rotary_dim is not None:
            _positive("attention", "rotary_dim", self.rotary_dim)
            if self.rotary_dim > self.head_dim:
                raise ConfigError("partial_rotary_factor", f"rotates {self.rotary_dim} of {self.head_dim} head features")
        if self.qk_norm_weight not in ("head", "projection"):
            raise ConfigError("qk_norm", f"unknown q/k norm weight layout {self.qk_norm_weight!r}")
        if self.qk_norm_kind.kind == "nonparametric":
            raise ConfigError("qk_norm", "a parameter-free q/k norm is not supported")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                "num_key_value_heads",
                f"num_attention_heads={self.num_attention_heads} is not divisible by "
                f"num_key_value_heads={self.num_key_value_heads}",
            )


@dataclass(frozen=True)
class LatentAttention:
    """DeepSeek's multi-head latent attention (MLA): K/V compressed to a shared latent."""

    num_attention_heads: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None  # None: queries projected directly from the hidden state
    bias: bool = False  # attention_bias: on q_a_proj, kv_a_proj_with_mqa and o_proj
    sliding_window: int | None = None
    causal = True  # a decoder's attention (a class constant, not a field)

    def __post_init__(self):
        for f in ("num_attention_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            _positive("MLA", f, getattr(self, f))
        if self.q_lora_rank is not None:
            _positive("MLA", "q_lora_rank", self.q_lora_rank)
        if self.sliding_window is not None:
            _positive("MLA", "sliding_window", self.sliding_window)


@dataclass(frozen=True)
class FFN:
    """A dense feed-forward block: plain (up, act, down) or gated (act(gate)·up, down)."""

    intermediate_size: int
    gated: bool = True
    activation: str = "silu"
    bias: bool = False
    fused_gate_up: bool = False

    def __post_init__(self):
        _positive("FFN", "intermediate_size", self.intermediate_size)
        if self.activation not in ACTIVATIONS:
            raise ConfigError("hidden_act", f"unknown activation {self.activation!r} (known: {', '.join(ACTIVATIONS)})")


@dataclass(frozen=True)
class MoE:
    """A mixture-of-experts FFN: a router, routed experts (top-k), optional shared experts."""

    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    n_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0  # width of one shared expert
    shared_expert_gate: bool = False  # Qwen-MoE: sigmoid gate Linear(d, 1) on the shared expert
    shared_expert_bias: bool = False  # DeepSeek-V2 ``mlp_bias``: biases on the shared-expert MLP
    expert_bias: bool = False  # biases on every routed expert's projections (gpt-oss)
    router_bias: bool = False  # a bias on the router's logits (gpt-oss)
    activation: str = "silu"
    gated: bool = True

    def __post_init__(self):
        _positive("MoE", "num_experts", self.num_experts)
        _positive("MoE", "num_experts_per_tok", self.num_experts_per_tok)
        _positive("MoE", "moe_intermediate_size", self.moe_intermediate_size)
        _positive("MoE", "n_shared_experts", self.n_shared_experts, zero_ok=True)
        if self.n_shared_experts:
            _positive("MoE", "shared_expert_intermediate_size", self.shared_expert_intermediate_size)
        if self.num_experts_per_tok > self.num_experts:
            raise ConfigError(
                "num_experts_per_tok",
                f"top-k {self.num_experts_per_tok} exceeds the number of experts {self.num_experts}",
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError("hidden_act", f"unknown activation {self.activation!r} (known: {', '.join(ACTIVATIONS)})")


#: norm positions a layer may have, in execution order
NORM_POSITIONS = ("attn.norm", "attn.post_norm", "xattn.norm", "xattn.post_norm", "ffn.norm", "ffn.post_norm")


@dataclass(frozen=True)
class Layer:
    """One transformer block: attention (or none), an FFN or MoE, its norms and residual layout."""

    attention: Attention | LatentAttention | None
    ffn: FFN | MoE
    norm: Norm = Norm()
    #: which norms exist; ``parallel`` blocks with one shared input norm have only "attn.norm"
    norms: tuple[str, ...] = ("attn.norm", "ffn.norm")
    #: attention and FFN read the same input and share one residual add (GPT-J, NeoX, Falcon)
    parallel: bool = False
    #: an encoder-decoder's decoder layer: queries from the decoder, keys/values from the encoder output
    cross_attention: Attention | None = None

    def __post_init__(self):
        unknown = set(self.norms) - set(NORM_POSITIONS)
        if unknown:
            raise ConfigError("norms", f"unknown norm positions {sorted(unknown)}")

    @property
    def attention_label(self) -> str:
        if self.attention is None:
            return "noattn"
        label = "swa" if self.attention.sliding_window else "full"
        # NoPE layers among RoPE ones (SmolLM3)
        return label if getattr(self.attention, "rope", True) else f"{label}_nope"

    @property
    def ffn_label(self) -> str:
        return "moe" if isinstance(self.ffn, MoE) else "dense"


@dataclass(frozen=True)
class Encoder:
    """What encoder-decoder (T5, BART) and encoder-only (BERT) models add to the layer stack.

    Encoder-decoder: ``layers`` run once over the ``s_enc`` source tokens; the
    Architecture's ``layers`` are the decoder. Encoder-only: ``layers`` is empty and the
    Architecture's ``layers`` (bidirectional) are the encoder; there is no decode phase.
    """

    layers: tuple[Layer, ...] = ()
    final_norm: Norm | None = None  # the encoder stack's last norm (T5, mBART)
    embedding_norm: Norm | None = None  # a norm on each stack's embeddings (BART's layernorm_embedding, BERT)
    position_offset: int = 0  # learned position rows no token takes (BART: 2; RoBERTa: padding_idx + 1)
    relative_buckets: int | None = None  # T5's relative-position bias buckets (None: no bias)
    relative_bias_per_layer: bool = False  # umT5: every layer its own bias table; T5: one per stack
    token_types: int | None = None  # BERT's token-type (segment) embeddings
    scale_logits: bool = False  # T5 with a tied head: the decoder output is scaled by d_model**-0.5
    #: BART untied: each stack its own token table, and a third (``shared``) neither stack reads
    separate_token_tables: bool = False
    #: encoder-only heads: "pooler", "mlm", "nsp", "classifier", "roberta_classifier", "token_classifier", "choice"
    heads: tuple[str, ...] = ()
    num_labels: int = 2
    #: Whisper: the encoder reads log-mel frames (this many bins) through two kernel-3
    #: convolutions (the second with stride 2: 2·s_enc frames in) instead of a token table
    mel_bins: int | None = None
    #: the encoder's own learned position table (Whisper's max_source_positions; None: as the decoder's)
    source_positions: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        _positive("encoder", "position_offset", self.position_offset, zero_ok=True)
        _positive("encoder", "num_labels", self.num_labels)
        for name in ("relative_buckets", "token_types", "mel_bins", "source_positions"):
            if getattr(self, name) is not None:
                _positive("encoder", name, getattr(self, name))
        unknown = set(self.heads) - {"pooler", "mlm", "nsp", "classifier", "roberta_classifier", "token_classifier", "choice"}
        if unknown:
            raise ConfigError("architectures", f"unknown encoder heads {sorted(unknown)}")


@dataclass(frozen=True)
class LayerGroup:
    """Equal layers gathered: the layer spec, how many, and the symbol that counts them."""

    layer: Layer
    count: int
    label: str
    repeat: Symbol


@dataclass(frozen=True)
class Architecture:
    """A whole model. Built from a config.json (see ``hf_config``) or from keyword arguments."""

    name: str
    vocab_size: int
    hidden_size: int
    layers: tuple[Layer, ...]
    tie_word_embeddings: bool = False
    final_norm: Norm | None = Norm()  # None: post-norm stacks without a last norm (BART, BERT)
    #: learned absolute position embeddings (GPT-2); None for RoPE/ALiBi models
    max_position_embeddings: int | None = None
    lm_head_bias: bool = False  # a bias on the logits (Phi-1/2)
    #: the context the model was trained for (config ``max_position_embeddings``) when
    #: positions are not learned: going beyond it is allowed, with a warning
    trained_context: int | None = None
    family: str = "custom"
    source: str = ""
    #: encoder-decoder or encoder-only models (see :class:`Encoder`); None for decoder-only ones
    encoder: Encoder | None = None

    def __post_init__(self):
        _positive(self.name, "vocab_size", self.vocab_size)
        _positive(self.name, "hidden_size", self.hidden_size)
        if self.max_position_embeddings is not None:
            _positive(self.name, "max_position_embeddings", self.max_position_embeddings)
        if self.trained_context is not None:
            _positive(self.name, "max_position_embeddings", self.trained_context)
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ConfigError("num_hidden_layers", "must be positive, got 0")
        if len(self.layers) > 10**5:
            raise ConfigError("num_hidden_layers", f"{len(self.layers)} is absurdly large")
        if self.kind != "encoder-decoder" and any(layer.cross_attention for layer in self.layers):
            raise ConfigError("cross_attention", "decoder layers with cross-attention need an encoder stack")
        if self.encoder is not None and self.encoder.mel_bins and self.encoder.source_positions is None:
            raise ConfigError("max_source_positions", "an audio encoder needs its own position table")
        self.symbol_values  # noqa: B018 - validates that layers agree on shared dimensions

    @property
    def context_limit(self) -> int | None:
        """The longest context the model knows: learned positions (a hard limit) or the
        trained context (a soft one); None when the config states neither."""
        return self.max_position_embeddings or self.trained_context

    @property
    def num_hidden_layers(self) -> int:
        return len(self.layers)

    @property
    def kind(self) -> str:
        """``decoder`` (decoder-only), ``encoder-decoder`` or ``encoder`` (encoder-only)."""
        if self.encoder is None:
            return "decoder"
        return "encoder-decoder" if self.encoder.layers else "encoder"

    @cached_property
    def encoder_groups(self) -> tuple[LayerGroup, ...]:
        """An encoder-decoder's encoder layers, repeating ``L_enc`` times (one kind only)."""
        if self.kind != "encoder-decoder":
            return ()
        kinds = list(dict.fromkeys(self.encoder.layers))
        if len(kinds) > 1:
            raise ConfigError("encoder_layers", "encoder layers that differ from one another are not supported")
        return (LayerGroup(kinds[0], len(self.encoder.layers), "encoder", S.L_enc),)

    @cached_property
    def groups(self) -> tuple[LayerGroup, ...]:
        """Distinct layer kinds in order of first appearance, with counts and count symbols."""
        counts = Counter(self.layers)
        kinds = list(dict.fromkeys(self.layers))
        if len(kinds) == 1:
            label = "decoder" if self.kind == "encoder-decoder" else "all"
            return (LayerGroup(kinds[0], counts[kinds[0]], label, S.L),)
        parts = []
        varying_attn = len({k.attention_label for k in kinds}) > 1
        varying_ffn = len({k.ffn_label for k in kinds}) > 1
        for kind in kinds:
            label = "_".join(
                [kind.attention_label] * varying_attn + [kind.ffn_label] * varying_ffn
            ) or "kind"
            parts.append(label)
        seen = Counter(parts)
        if any(n > 1 for n in seen.values()):
            parts = [f"{p}{i}" for i, p in enumerate(parts)]
        return tuple(LayerGroup(kind, counts[kind], label, S.layer_count(label)) for kind, label in zip(kinds, parts))

    @cached_property
    def symbol_values(self) -> dict[Symbol, int]:
        """The value of every model symbol; layers that disagree on a shared dimension are refused."""
        values: dict[Symbol, int] = {S.V: self.vocab_size, S.d: self.hidden_size, S.L: len(self.layers)}
        if self.max_position_embeddings is not None:
            values[S.P] = self.max_position_embeddings

        def put(symbol: Symbol, value: int, field: str) -> None:
            if values.setdefault(symbol, value) != value:
                raise ConfigError(
                    field, f"layers disagree ({values[symbol]} vs {value}); per-layer sizes are not supported"
                )

        if self.encoder is not None and self.encoder.relative_buckets:
            values[S.n_rb] = self.encoder.relative_buckets
        for group in self.groups + self.encoder_groups:
            if group.repeat != S.L:
                values[group.repeat] = group.count
            layer = group.layer
            for cross in (layer.cross_attention,) if layer.cross_attention else ():
                put(S.n_h, cross.num_attention_heads, "num_attention_heads")
                put(S.n_kv, cross.num_key_value_heads, "num_key_value_heads")
                put(S.d_h, cross.head_dim, "head_dim")
            att = layer.attention
            if isinstance(att, Attention):
                put(S.n_h, att.num_attention_heads, "num_attention_heads")
                put(S.n_kv, att.num_key_value_heads, "num_key_value_heads")
                put(S.d_h, att.head_dim, "head_dim")
            elif isinstance(att, LatentAttention):
                put(S.n_h, att.num_attention_heads, "num_attention_heads")
                put(S.r_kv, att.kv_lora_rank, "kv_lora_rank")
                put(S.d_nope, att.qk_nope_head_dim, "qk_nope_head_dim")
                put(S.d_rope, att.qk_rope_head_dim, "qk_rope_head_dim")
                put(S.d_v, att.v_head_dim, "v_head_dim")
                if att.q_lora_rank is not None:
                    put(S.r_q, att.q_lora_rank, "q_lora_rank")
            if att is not None and att.sliding_window:
                put(S.W, att.sliding_window, "sliding_window")
            ffn = layer.ffn
            if isinstance(ffn, FFN):
                put(S.d_ff, ffn.intermediate_size, "intermediate_size")
            else:
                put(S.E, ffn.num_experts, "num_experts")
                put(S.k, ffn.num_experts_per_tok, "num_experts_per_tok")
                put(S.d_e, ffn.moe_intermediate_size, "moe_intermediate_size")
                if ffn.n_shared_experts:
                    put(S.E_s, ffn.n_shared_experts, "n_shared_experts")
                    put(S.d_se, ffn.shared_expert_intermediate_size, "shared_expert_intermediate_size")
        return values
