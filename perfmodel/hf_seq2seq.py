"""Config readers for encoder-decoder (T5, mT5, umT5, BART, mBART, Whisper) and encoder-only
(BERT, RoBERTa, XLM-RoBERTa) families, registered with :func:`hf_config.reader`.

Each follows its ``transformers`` 5.23 modelling code: T5's attention has no biases and
its heads are ``d_kv`` wide whatever ``d_model`` is; BART's and BERT's heads are
``d_model/heads`` wide and every projection has a bias. The sizes a model cannot be built
without are required; other fields take the config class's default.
"""

from __future__ import annotations

from perfmodel.architecture import FFN, Attention, Encoder, Layer, Norm
from perfmodel.errors import ConfigError
from perfmodel.hf_config import Config, derived_head_dim, reader

LAYER_NORM = Norm("layer", bias=True)


def _aliased(c: Config, key: str, alias: str, **default) -> int:
    """A size the config class also reads under an ``attribute_map`` alias (T5's ``d_kv`` is
    ``head_dim``); a file giving both with different values contradicts itself."""
    if not c.absent(key) and not c.absent(alias) and c.int(key) != c.int(alias):
        raise ConfigError(alias, f"{c.int(alias)} contradicts {key}={c.int(key)} (the same field under two names)")
    return c.int(key, alias, **default)


def _feed_forward(c: Config) -> tuple[bool, str]:
    """T5's ``feed_forward_proj``: ``ACT`` or ``gated-ACT`` (``gated-gelu`` is the tanh GELU);
    the class default is ``relu`` for T5, ``gated-gelu`` for mT5 and umT5."""
    value = c.get("feed_forward_proj", default="relu" if c.model_type == "t5" else "gated-gelu")
    parts = value.split("-") if isinstance(value, str) else []
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ConfigError("feed_forward_proj", f"must be ACT or gated-ACT (e.g. relu, gated-gelu), got {value!r}")
    gated = len(parts) == 2
    name = "gelu_new" if value == "gated-gelu" else parts[-1]
    return gated, Config({"feed_forward_proj": name}, c.model_type).activation("feed_forward_proj")


@reader("t5", "mt5", "umt5")
def _t5(c: Config) -> dict:
    """T5 (v1.0 and v1.1/Flan), mT5, umT5: pre-norm RMSNorm stacks, bias-free attention with
    ``num_heads × d_kv`` inner width and a learned relative-position bias (one table per
    stack; umT5: one per layer), ReLU or gated-GELU FFN, a final norm in each stack, the
    token table shared by both stacks and, when ``tie_word_embeddings`` (default true),
    by the head, whose input is then scaled by ``d_model**-0.5``. ``architectures``
    ``T5EncoderModel`` (and the mT5/umT5 ones): the encoder stack alone, encoder-only."""
    hidden = _aliased(c, "d_model", "hidden_size")
    heads = _aliased(c, "num_heads", "num_attention_heads")
    head_dim = _aliased(c, "d_kv", "head_dim", default=64)
    n_enc = _aliased(c, "num_layers", "num_hidden_layers")
    n_dec = c.int("num_decoder_layers", default=n_enc)
    gated, activation = _feed_forward(c)
    ffn = FFN(c.int("d_ff"), gated=gated, activation=activation)
    rms = Norm("rms")

    def attention(causal: bool, bias: bool) -> Attention:
        return Attention(heads, heads, head_dim, rope=False, causal=causal, position_bias=bias)

    encoder_layer = Layer(attention(False, True), ffn, norm=rms)
    decoder_layer = Layer(
        attention(True, True), ffn, norm=rms, norms=("attn.norm", "xattn.norm", "ffn.norm"),
        cross_attention=attention(False, False),
    )
    buckets = c.int("relative_attention_num_buckets", default=32)
    names = c.get("architectures", default=None) or [""]
    if isinstance(names, list) and isinstance(names[0], str) and names[0].endswith("EncoderModel"):
        # T5EncoderModel (a text encoder, e.g. of diffusion models): the encoder stack alone
        encoder = Encoder(relative_buckets=buckets, relative_bias_per_layer=c.model_type == "umt5")
        return dict(vocab_size=c.int("vocab_size"), hidden_size=hidden, layers=(encoder_layer,) * n_enc, final_norm=rms, encoder=encoder)
    tied = c.bool("tie_word_embeddings", default=True)
    encoder = Encoder(
        layers=(encoder_layer,) * n_enc,
        final_norm=rms,
        relative_buckets=buckets,
        relative_bias_per_layer=c.model_type == "umt5",
        scale_logits=tied,
    )
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(decoder_layer,) * n_dec,
        tie_word_embeddings=tied,
        final_norm=rms,
        encoder=encoder,
    )


def _same(c: Config, encoder_key: str, decoder_key: str) -> int:
    """A size both stacks must share (perfmodel keeps one symbol per dimension)."""
    value, other = c.int(encoder_key), c.int(decoder_key)
    if value != other:
        raise ConfigError(decoder_key, f"{other} differs from {encoder_key}={value}; stacks of different widths are not supported")
    return value


@reader("bart", "mbart")
def _bart(c: Config) -> dict:
    """BART (post-norm) and mBART (pre-norm, plus a final LayerNorm per stack): biased
    projections, LayerNorms with bias, a plain FFN, learned positions in each stack with 2
    rows beyond ``max_position_embeddings``, ``layernorm_embedding`` in each stack, the token
    table shared by both stacks and the head (``final_logits_bias`` is a buffer, not a weight);
    untied, each stack has its own table and the model keeps ``shared`` as well."""
    hidden = _aliased(c, "d_model", "hidden_size")
    heads = _same(c, "encoder_attention_heads", "decoder_attention_heads")
    head_dim = derived_head_dim(hidden, heads)
    ffn = FFN(_same(c, "encoder_ffn_dim", "decoder_ffn_dim"), gated=False, activation=c.activation("activation_function", default="gelu"), bias=True)
    pre_norm = c.model_type == "mbart"
    where = ("norm", "norm", "norm") if pre_norm else ("post_norm", "post_norm", "post_norm")
    enc_norms = (f"attn.{where[0]}", f"ffn.{where[2]}")
    dec_norms = (f"attn.{where[0]}", f"xattn.{where[1]}", f"ffn.{where[2]}")

    def attention(causal: bool) -> Attention:
        return Attention(heads, heads, head_dim, qkv_bias=True, o_bias=True, rope=False, causal=causal)

    encoder_layer = Layer(attention(False), ffn, norm=LAYER_NORM, norms=enc_norms)
    decoder_layer = Layer(attention(True), ffn, norm=LAYER_NORM, norms=dec_norms, cross_attention=attention(False))
    final = LAYER_NORM if pre_norm else None
    tied = c.bool("tie_word_embeddings", default=True)
    encoder = Encoder(
        separate_token_tables=not tied,
        layers=(encoder_layer,) * c.int("encoder_layers"),
        final_norm=final,
        embedding_norm=LAYER_NORM,
        position_offset=2,
    )
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(decoder_layer,) * c.int("decoder_layers"),
        tie_word_embeddings=tied,
        final_norm=final,
        max_position_embeddings=c.int("max_position_embeddings"),
        encoder=encoder,
    )


#: encoder-only heads by the class ``architectures`` names (its suffix after the family prefix)
_HEADS = {
    "ForMaskedLM": ("mlm",),
    "ForPreTraining": ("pooler", "mlm", "nsp"),
    "Model": ("pooler",),
    "ForSequenceClassification": ("pooler", "classifier"),
    "ForTokenClassification": ("token_classifier",),
    "ForQuestionAnswering": ("token_classifier",),  # qa_outputs: num_labels (2) logits per token
    "ForMultipleChoice": ("pooler", "choice"),
    "ForNextSentencePrediction": ("pooler", "nsp"),
}


def _encoder_heads(c: Config) -> tuple[str, ...]:
    """The heads of the class ``architectures`` names (absent: the family's MLM class, what
    its pretrained checkpoints are). RoBERTa's sequence classifier is its own dense + tanh
    + projection on the first token, without BERT's pooler."""
    names = c.get("architectures", default=None) or []
    if not isinstance(names, list):
        raise ConfigError("architectures", f"must be a list of class names, got {names!r}")
    if not names:
        return _HEADS["ForMaskedLM"]
    name = names[0]
    suffix = next((s for s in sorted(_HEADS, key=len, reverse=True) if isinstance(name, str) and name.endswith(s)), None)
    if suffix is None or (suffix in ("ForPreTraining", "ForNextSentencePrediction") and c.model_type != "bert"):
        raise ConfigError("architectures", f"{name!r} is not supported for {c.model_type} (known heads: *{', *'.join(_HEADS)})")
    if suffix == "ForSequenceClassification" and c.model_type != "bert":
        return ("roberta_classifier",)
    return _HEADS[suffix]


@reader("bert", "roberta", "xlm-roberta")
def _bert(c: Config) -> dict:
    """BERT, RoBERTa, XLM-RoBERTa: post-norm encoders with biased projections, learned
    positions (RoBERTa's first ``pad_token_id + 1`` rows are never used: 514 rows, 512
    tokens), token-type embeddings and an embedding LayerNorm; the heads of the class
    ``architectures`` names (MLM: dense, activation, LayerNorm, then logits with the tied
    word embeddings and a bias; pooler, NSP, classifiers)."""
    if c.bool("is_decoder", default=False) or c.bool("add_cross_attention", default=False):
        raise ConfigError("is_decoder", f"{c.model_type} used as a causal decoder is not supported")
    hidden = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    head_dim = derived_head_dim(hidden, heads)
    attention = Attention(heads, heads, head_dim, qkv_bias=True, o_bias=True, rope=False, causal=False)
    ffn = FFN(c.int("intermediate_size"), gated=False, activation=c.activation("hidden_act", default="gelu"), bias=True)
    layer = Layer(attention, ffn, norm=LAYER_NORM, norms=("attn.post_norm", "ffn.post_norm"))
    labels = c.get("id2label", default=None)
    num_labels = len(labels) if isinstance(labels, dict) and labels else c.int("num_labels", default=2)
    table = c.int("max_position_embeddings", default=512)
    # RoBERTa numbers positions from padding_idx + 1: that many rows of its table are never a token's
    reserved = 0 if c.model_type == "bert" else c.int("pad_token_id", default=1, zero_ok=True) + 1
    if reserved >= table:
        raise ConfigError("max_position_embeddings", f"{table} leaves no position after padding_idx={reserved - 1}")
    encoder = Encoder(
        position_offset=reserved,
        embedding_norm=LAYER_NORM,
        token_types=c.int("type_vocab_size", default=2, zero_ok=True) or None,
        heads=_encoder_heads(c),
        num_labels=num_labels,
    )
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(layer,) * c.int("num_hidden_layers"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        final_norm=None,
        max_position_embeddings=table - reserved,  # the positions a token can take
        encoder=encoder,
    )


@reader("whisper")
def _whisper(c: Config) -> dict:
    """Whisper: the encoder reads ``num_mel_bins`` log-mel frames through two convolutions
    and a (frozen) table of ``max_source_positions`` positions; the decoder is mBART-shaped
    (pre-norm, final LayerNorm per stack, no embedding norm) with ``max_target_positions``
    learned positions; k_proj has no bias where q, v and out do; ``proj_out`` is tied to
    the decoder's token table unless ``tie_word_embeddings`` is false."""
    hidden = _aliased(c, "d_model", "hidden_size")
    heads = _same(c, "encoder_attention_heads", "decoder_attention_heads")
    head_dim = derived_head_dim(hidden, heads)
    ffn = FFN(_same(c, "encoder_ffn_dim", "decoder_ffn_dim"), gated=False, activation=c.activation("activation_function", default="gelu"), bias=True)

    def attention(causal: bool) -> Attention:
        return Attention(heads, heads, head_dim, qkv_bias=True, o_bias=True, k_bias=False, rope=False, causal=causal)

    encoder_layer = Layer(attention(False), ffn, norm=LAYER_NORM)
    decoder_layer = Layer(
        attention(True), ffn, norm=LAYER_NORM, norms=("attn.norm", "xattn.norm", "ffn.norm"), cross_attention=attention(False)
    )
    encoder = Encoder(
        layers=(encoder_layer,) * c.int("encoder_layers"),
        final_norm=LAYER_NORM,
        mel_bins=c.int("num_mel_bins", default=80),
        source_positions=c.int("max_source_positions", default=1500),
    )
    return dict(
        vocab_size=c.int("vocab_size"),
        hidden_size=hidden,
        layers=(decoder_layer,) * c.int("decoder_layers"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        final_norm=LAYER_NORM,
        max_position_embeddings=c.int("max_target_positions", default=448),
        encoder=encoder,
    )
