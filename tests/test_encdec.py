"""Encoder-decoder (T5, mT5, umT5, BART, mBART, Whisper) and encoder-only (BERT, RoBERTa,
XLM-RoBERTa) models against independent sources.

- Parameters: the real ``transformers`` 5.23 class on the meta device,
  ``sum(p.numel() for p in model.parameters())`` (tied tensors once). Encoder-decoders are
  ``AutoModelForSeq2SeqLM`` (Whisper: ``AutoModelForSpeechSeq2Seq``); encoder-only models are the class their ``architectures``
  names (absent: ``*ForMaskedLM``). What each class ties by default: T5/mT5/umT5 share one
  token table between both stacks (``shared``) and, when tied, the LM head; BART/mBART
  share ``shared`` between both stacks and the LM head (``tie_word_embeddings`` default
  true; ``final_logits_bias`` is a buffer, not a parameter); BERT/RoBERTa tie the MLM
  decoder's weight to the word embeddings (its bias is its own); Whisper ties ``proj_out`` to
  the decoder's token table (its encoder has none: convolutions over log-mel frames).
  transformers 5.23 forces T5's head tied (``T5Config.__post_init__`` sets
  ``tie_word_embeddings = True`` whatever the file says), although a file that says false
  (flan-t5, t5-v1_1, mT5) describes a checkpoint that stores ``lm_head.weight`` apart: we
  count that checkpoint, so our total is the class's plus its ``lm_head.weight.numel()``.
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` counting the real model on fake
  tensors with eager attention (the full score square: ``mask=none``), see
  ``test_flop_counter.py`` for what it counts.
- Cache: the ``EncoderDecoderCache`` a short ``generate`` leaves on a tiny random-weight
  model, its self- and cross-attention tensors' bytes.
- Bad input: the real command line, one ``error:`` line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import pytest

from conftest import REPO, counted_with_result, preset_config
from perfmodel import api, metrics
from perfmodel.evaluate import bindings, value
from perfmodel.hf_config import from_config
from perfmodel.options import Options
from perfmodel.presets import registry
from perfmodel.scenario import Scenario
from perfmodel.table import build

SEQ2SEQ = ("t5", "mt5", "umt5", "bart", "mbart", "whisper")
PRESETS = ["flan-t5-base", "t5-v1_1-large", "bart-large", "whisper-base", "bert-base-uncased", "roberta-large"]


def _transformers():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    transformers.logging.set_verbosity_error()
    return transformers


def hf_model(data: dict, **kw):
    """The class ``data`` describes, built from ``AutoConfig.for_model`` (on the current device)."""
    transformers = _transformers()
    rest = dict(data)
    model_type = rest.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, **rest)
    names = data.get("architectures")
    if names and names[0].endswith("EncoderModel"):
        return getattr(transformers, names[0])._from_config(cfg, **kw)
    if model_type == "whisper":
        return transformers.AutoModelForSpeechSeq2Seq.from_config(cfg, **kw)
    if model_type in SEQ2SEQ:
        return transformers.AutoModelForSeq2SeqLM.from_config(cfg, **kw)
    if names:
        return getattr(transformers, names[0])._from_config(cfg, **kw)
    return transformers.AutoModelForMaskedLM.from_config(cfg, **kw)


def hf_checkpoint_params(data: dict) -> tuple[int, int]:
    """(parameters of the transformers model, parameters of the checkpoint the file describes):
    the same, except for a T5-family file with ``tie_word_embeddings: false``, whose
    separately stored head transformers 5.23 ties away."""
    import torch

    with torch.device("meta"):
        model = hf_model(data)
    numel = sum(p.numel() for p in model.parameters())
    t5_family = data["model_type"] in ("t5", "mt5", "umt5")
    if t5_family:
        assert model.config.tie_word_embeddings is True  # forced, whatever the file says
    untied_t5 = t5_family and data.get("tie_word_embeddings") is False and hasattr(model, "lm_head")
    return numel, numel + (model.lm_head.weight.numel() if untied_t5 else 0)


def ours(data: dict) -> int:
    return api.params(from_config(data)).iloc[0]["total_params"]


@cache
def _preset_counts(name: str) -> tuple[int, int]:
    return hf_checkpoint_params(preset_config(name))


@pytest.mark.parametrize("name", PRESETS)
def test_presets_equal_transformers(name):
    """Every new preset: our count is the checkpoint's. For flan-t5-base and t5-v1_1-large
    (untied heads) both figures are shown: the class's (tied by force) and the checkpoint's."""
    numel, checkpoint = _preset_counts(name)
    rec = registry()[name]
    assert ours(preset_config(name)) == checkpoint == rec["total_params"]
    if "transformers_numel" in rec:
        assert numel == rec["transformers_numel"] < checkpoint
        assert checkpoint - numel == preset_config(name)["vocab_size"] * preset_config(name)["d_model"]
    else:
        assert numel == checkpoint


#: small base configs, one per family
BASES = {
    "t5": dict(model_type="t5", vocab_size=64, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2),
    "mt5": dict(model_type="mt5", vocab_size=64, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2),
    "umt5": dict(model_type="umt5", vocab_size=64, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2),
    "bart": dict(model_type="bart", vocab_size=64, d_model=32, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=48, decoder_ffn_dim=48, encoder_layers=2, decoder_layers=2, max_position_embeddings=40),
    "mbart": dict(model_type="mbart", vocab_size=64, d_model=32, encoder_attention_heads=4, decoder_attention_heads=4,
                  encoder_ffn_dim=48, decoder_ffn_dim=48, encoder_layers=2, decoder_layers=2, max_position_embeddings=40),
    # Whisper: 12 source positions, so the encoder reads exactly 24 mel frames (as transformers requires)
    "whisper": dict(model_type="whisper", vocab_size=64, d_model=32, encoder_attention_heads=4, decoder_attention_heads=4,
                    encoder_ffn_dim=48, decoder_ffn_dim=48, encoder_layers=2, decoder_layers=2, max_source_positions=12,
                    max_target_positions=20, num_mel_bins=16, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                    decoder_start_token_id=1),
    "bert": dict(model_type="bert", vocab_size=64, hidden_size=32, num_attention_heads=4, intermediate_size=48,
                 num_hidden_layers=2, max_position_embeddings=40),
    "roberta": dict(model_type="roberta", vocab_size=64, hidden_size=32, num_attention_heads=4, intermediate_size=48,
                    num_hidden_layers=2, max_position_embeddings=40, pad_token_id=1),
    "xlm-roberta": dict(model_type="xlm-roberta", vocab_size=64, hidden_size=32, num_attention_heads=4,
                        intermediate_size=48, num_hidden_layers=2, max_position_embeddings=40, pad_token_id=1),
}
ABSENT = object()
T5_FIELDS = [
    {"num_decoder_layers": 3},
    {"feed_forward_proj": "gated-gelu"},
    {"feed_forward_proj": "gated-silu"},
    {"feed_forward_proj": "gelu"},
    {"tie_word_embeddings": False},
    {"tie_word_embeddings": True},
    {"d_kv": ABSENT},  # the class default, 64: num_heads·d_kv need not equal d_model
    {"d_kv": 16},
    {"relative_attention_num_buckets": 8},
    {"architectures": ["{P}EncoderModel"]},  # the encoder stack alone (a text encoder)
    {"architectures": ["{P}EncoderModel"], "tie_word_embeddings": False},  # no head to untie
]
BART_FIELDS = [
    {"decoder_layers": 3},
    {"tie_word_embeddings": False},
    {"activation_function": "relu"},
    {"max_position_embeddings": 64},
    {"scale_embedding": True},
]
WHISPER_FIELDS = [
    {"decoder_layers": 3},
    {"tie_word_embeddings": False},
    {"num_mel_bins": ABSENT},  # the class default, 80
    {"max_target_positions": 32},
    {"activation_function": "relu"},
]
BERT_FIELDS = [
    {"architectures": ["{P}ForMaskedLM"]},
    {"architectures": ["{P}Model"]},
    {"architectures": ["{P}ForSequenceClassification"], "id2label": {"0": "a", "1": "b", "2": "c"}},
    {"architectures": ["{P}ForSequenceClassification"], "num_labels": 5},
    {"architectures": ["{P}ForTokenClassification"], "num_labels": 7},
    {"architectures": ["{P}ForQuestionAnswering"]},
    {"architectures": ["{P}ForMultipleChoice"]},
    {"type_vocab_size": 1},
    {"type_vocab_size": ABSENT},
    {"max_position_embeddings": ABSENT},
    {"pad_token_id": 0},  # RoBERTa: positions from padding_idx + 1; the table's size is unchanged
    {"hidden_act": "gelu_new"},
    {"tie_word_embeddings": False},
]
PREFIX = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "t5": "T5", "mt5": "MT5", "umt5": "UMT5"}


def _cases():
    for family, base in BASES.items():
        fields = {"t5": T5_FIELDS, "mt5": T5_FIELDS, "umt5": T5_FIELDS, "bart": BART_FIELDS, "mbart": BART_FIELDS,
                  "whisper": WHISPER_FIELDS}.get(family, BERT_FIELDS)
        yield family, {}
        for extra in fields:
            yield family, extra
    yield "bert", {"architectures": ["BertForPreTraining"]}
    yield "bert", {"architectures": ["BertForNextSentencePrediction"]}


CASES = list(_cases())


def _config(family: str, extra: dict) -> dict:
    out = dict(BASES[family])
    for key, val in extra.items():
        if val is ABSENT:
            out.pop(key, None)
        elif key == "architectures":
            out[key] = [val[0].replace("{P}", PREFIX[family])]
        else:
            out[key] = val
    return out


@pytest.mark.parametrize("family,extra", CASES, ids=[f"{f}-{'-'.join(map(str, e)) or 'base'}" for f, e in CASES])
def test_generated_configs_equal_transformers(family, extra):
    """One optional field at a time on a small config of each family: our total is the
    checkpoint's count (the class's, plus T5's untied head where the file keeps it apart)."""
    data = _config(family, extra)
    _, checkpoint = hf_checkpoint_params(data)
    assert ours(data) == checkpoint, data


def test_t5_inner_width_need_not_match_d_model():
    """T5's attention is ``num_heads × d_kv`` wide whatever ``d_model`` is (t5-11b: 128 × 128
    = 16384 against d_model 1024): q/k/v are [n·d_kv, d_model], o is [d_model, n·d_kv]."""
    data = {**BASES["t5"], "num_heads": 3, "d_kv": 20}
    shapes = api.shapes(from_config(data)).set_index("tensor")["shape"]
    assert shapes["attn.q_proj.weight"] == [60, 32] and shapes["encoder.attn.o_proj.weight"] == [32, 60]
    assert ours(data) == hf_checkpoint_params(data)[1]


# ---------------------------------------------------------------------------------------
# FLOPs against FlopCounterMode on fake tensors.

B, SRC, TGT = 2, 12, 7
FLOP_CONFIGS = {
    "t5": {**BASES["t5"], "num_decoder_layers": 3, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "d_kv": 16},
    "umt5": {**BASES["umt5"], "feed_forward_proj": "gated-gelu"},
    "bart": {**BASES["bart"], "decoder_layers": 3},
    "mbart": BASES["mbart"],
    "whisper": {**BASES["whisper"], "decoder_layers": 3},
    # full-size presets (fake tensors allocate nothing)
    "flan-t5-base": preset_config("flan-t5-base"),
    "bart-large": preset_config("bart-large"),
}


def fake_model(data: dict):
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    _transformers()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = hf_model(data, attn_implementation="eager")
    return model, mode, torch


def our_flops(arch, options: Options, keep=lambda name: True, passes=("fwd",), **step) -> int:
    ops = [op for op in build(arch, options).ops if op.pass_ in passes and keep(op.name)]
    return value(metrics.totals(ops, ("matmul_flops",))["matmul_flops"], bindings(arch, **step))


def encoder_op(name: str) -> bool:
    return name.startswith("encoder.")


@pytest.mark.parametrize("family", FLOP_CONFIGS)
def test_seq2seq_flops_match(family):
    """The encoder over the source (Whisper: its two convolutions over the mel frames, which
    FlopCounterMode counts as convolutions); the decoder's first pass over ``TGT`` target tokens given
    the encoder output (with the cross-attention K/V projections, every token's logits);
    both together; and a decode step against the filled cache, which projects no source K/V
    again (the cross K/V are computed once)."""
    data = FLOP_CONFIGS[family]
    model, mode, torch = fake_model(data)
    arch = from_config(data)
    tgt = torch.zeros(B, TGT, dtype=torch.long)
    if family == "whisper":  # 2·SRC log-mel frames; conv2 (stride 2) leaves SRC positions
        source = {"input_features": torch.zeros(B, data["num_mel_bins"], 2 * SRC)}
    else:
        source = {"input_ids": torch.zeros(B, SRC, dtype=torch.long)}
    with mode, torch.no_grad():
        encoder, encoded = counted_with_result(lambda: model.get_encoder()(**source))
        decoder, out = counted_with_result(lambda: model(encoder_outputs=encoded, decoder_input_ids=tgt))
        both, _ = counted_with_result(lambda: model(**source, decoder_input_ids=tgt, use_cache=False))
        step, _ = counted_with_result(
            lambda: model(encoder_outputs=encoded, decoder_input_ids=tgt[:, :1], past_key_values=out.past_key_values)
        )
    prefill = Options(phase="prefill", mask="none", all_logits=True)
    at = dict(b=B, s=TGT, t=0, s_enc=SRC)
    assert encoder == our_flops(arch, prefill, encoder_op, **at)
    assert decoder == our_flops(arch, prefill, lambda n: not encoder_op(n), **at)
    assert both == our_flops(arch, prefill, **at)
    assert step == our_flops(arch, Options(phase="decode", mask="none"), b=B, s=1, t=TGT, s_enc=SRC)


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_seq2seq_train_step_matches(family):
    """Forward + ``loss.backward()`` with labels (teacher forcing): both stacks, backward 2×
    each matmul (eager attention does not recompute scores: ``attention_impl=naive``)."""
    data = FLOP_CONFIGS[family]
    model, mode, torch = fake_model(data)
    model.train()
    src = torch.zeros(B, SRC, dtype=torch.long)
    tgt = torch.zeros(B, TGT, dtype=torch.long)
    with mode:
        got, _ = counted_with_result(lambda: model(input_ids=src, decoder_input_ids=tgt, labels=tgt, use_cache=False).loss.backward())
    options = Options(phase="train", mask="none", attention_impl="naive")
    assert got == our_flops(from_config(data), options, passes=("fwd", "bwd"), b=B, s=TGT, t=0, s_enc=SRC)


ENCODER_ONLY = {
    "bert-mlm": BASES["bert"],
    "bert-pretraining": {**BASES["bert"], "architectures": ["BertForPreTraining"]},
    "roberta-classifier": {**BASES["roberta"], "architectures": ["RobertaForSequenceClassification"], "num_labels": 3},
    "bert-base-uncased": preset_config("bert-base-uncased"),
    "t5-encoder": {**BASES["t5"], "architectures": ["T5EncoderModel"], "feed_forward_proj": "gated-gelu"},
}


@pytest.mark.parametrize("name", ENCODER_ONLY)
def test_encoder_only_flops_match(name):
    """One forward over ``SRC`` tokens (bidirectional attention, the heads of the class), and
    for the MLM model a training step."""
    data = ENCODER_ONLY[name]
    model, mode, torch = fake_model(data)
    arch = from_config(data)
    ids = torch.zeros(B, SRC, dtype=torch.long)
    with mode, torch.no_grad():
        got, _ = counted_with_result(lambda: model(input_ids=ids))
    assert got == our_flops(arch, Options(phase="prefill"), b=B, s=SRC, t=0)
    if name in ("bert-mlm", "bert-base-uncased"):
        model.train()
        with mode:
            trained, _ = counted_with_result(lambda: model(input_ids=ids, labels=ids).loss.backward())
        options = Options(phase="train", attention_impl="naive")
        assert trained == our_flops(arch, options, passes=("fwd", "bwd"), b=B, s=SRC, t=0)


def test_encoder_attention_is_bidirectional():
    """Hand derivation: an encoder layer's QKᵀ over ``n`` tokens is ``2·b·n_h·n·n·d_h``
    whatever ``--mask`` says (no causal mask in an encoder); a BERT forward keeps no cache."""
    arch = from_config(BASES["bert"])
    for mask in ("causal", "none"):
        table = build(arch, Options(phase="prefill", mask=mask))
        (qk,) = [op for op in table.ops if op.name == "attn.qk"]
        assert value(qk.matmul_flops, bindings(arch, b=B, s=SRC, t=0)) == 2 * B * 4 * SRC * SRC * 8
        assert not [op for op in table.ops if op.name == "attn.kv_cache_write"]


# ---------------------------------------------------------------------------------------
# The real EncoderDecoderCache after a short generate.

#: equal stack depths: transformers 5.23's generate sizes a T5 cache by ``num_layers`` (the
#: encoder's) and fails on a deeper decoder
CACHE_CONFIGS = {"t5": {**FLOP_CONFIGS["t5"], "num_decoder_layers": 2, "decoder_start_token_id": 0}, "bart": {**FLOP_CONFIGS["bart"], "forced_bos_token_id": None}}


@pytest.mark.parametrize("family", CACHE_CONFIGS)
def test_real_cache_bytes(family):
    """``generate`` of 4 new tokens (fp32) from a ``SRC``-token source: the self-attention
    cache holds every target token fed so far (the start token and 3 generated), each
    decoder layer's cross-attention cache the ``SRC`` source tokens; their bytes are
    ``perfmodel kv-cache``'s ``self_kv_cache_bytes`` and ``cross_kv_cache_bytes``."""
    transformers = _transformers()
    import torch

    data = CACHE_CONFIGS[family]
    torch.manual_seed(0)
    model = hf_model(data).eval()
    src = torch.randint(2, data["vocab_size"], (B, SRC))
    with torch.no_grad():
        out = model.generate(input_ids=src, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                             return_dict_in_generate=True, use_cache=True)
    cache = out.past_key_values
    assert isinstance(cache, transformers.EncoderDecoderCache)

    def held(part) -> int:
        return sum(t.numel() * t.element_size() for layer in part.layers for t in (layer.keys, layer.values))

    target = out.sequences.shape[1] - 1  # the last generated token is never fed back
    sc = Scenario(from_config(data), Options(phase="prefill"), batch=B, seq=target, context=0, source=SRC, kv_dtype="fp32")
    row = api.kv_cache(sc).iloc[0]
    assert held(cache.self_attention_cache) == row["self_kv_cache_bytes"]
    assert held(cache.cross_attention_cache) == row["cross_kv_cache_bytes"]
    assert row["kv_cache_bytes"] == row["self_kv_cache_bytes"] + row["cross_kv_cache_bytes"]


def test_cross_cache_is_fixed_by_the_source():
    """Hand derivation for flan-t5-base (12 decoder layers, 12 heads × d_kv 64, bf16): the
    self cache is 2·12·12·64·2 = 36864 bytes per target token, the cross cache the same
    per source token, independent of the target length."""
    per_token = 2 * 12 * 12 * 64 * 2
    for context, source in ((1, 512), (300, 512), (300, 64)):
        row = api.kv_cache(Scenario(load("flan-t5-base"), Options(phase="prefill"), seq=context, context=0, source=source)).iloc[0]
        assert row["kv_cache_bytes_per_token"] == per_token
        assert row["self_kv_cache_bytes"] == per_token * context
        assert row["cross_kv_cache_bytes"] == per_token * source


def load(name):
    from perfmodel.presets import load_model

    return load_model(name)


# ---------------------------------------------------------------------------------------
# Bad input through the command line.


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfmodel", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


REFUSED = {
    # BART requires d_model = heads × head size (BartAttention raises otherwise)
    "bart-heads-not-dividing": (["params", "--model", "bart-large", "--set", "encoder_attention_heads=12", "--set", "decoder_attention_heads=12", "--set", "d_model=1000"], "num_attention_heads"),
    "bert-heads-not-dividing": (["params", "--model", "bert-base-uncased", "--set", "num_attention_heads=7"], "num_attention_heads"),
    "t5-missing-d-model": (["params", "--model", "{t5_no_d_model}"], "d_model"),
    # num_heads·d_kv given twice (d_kv and its attribute_map alias head_dim) with different values
    "t5-head-dim-contradicts-d-kv": (["params", "--model", "flan-t5-base", "--set", "head_dim=32"], "head_dim"),
    "t5-bad-feed-forward": (["params", "--model", "flan-t5-base", "--set", "feed_forward_proj=gated-gelu-x"], "feed_forward_proj"),
    "t5-zero-d-kv": (["params", "--model", "flan-t5-base", "--set", "d_kv=0"], "d_kv"),
    "bert-decode": (["flops", "--model", "bert-base-uncased", "--phase", "decode"], "no decode phase"),
    "bert-context": (["flops", "--model", "bert-base-uncased", "--context", "8"], "keeps no cache"),
    "bart-stacks-differ": (["params", "--model", "bart-large", "--set", "decoder_ffn_dim=2048"], "decoder_ffn_dim"),
    "source-on-decoder-only": (["flops", "--model", "gpt2", "--source-len", "64"], "source-len"),
    "bart-source-too-long": (["flops", "--model", "bart-large", "--source-len", "2k"], "max_position_embeddings"),
    "whisper-source-too-long": (["flops", "--model", "{whisper}", "--source-len", "13"], "max_source_positions"),
    # RoBERTa numbers positions from padding_idx + 1 = 2: 512 of its 514 rows are tokens'
    "roberta-past-its-positions": (["flops", "--model", "roberta-large", "--seq", "513"], "max_position_embeddings=512"),
    "bert-unknown-head": (["params", "--model", "bert-base-uncased", "--set", 'architectures=["BertForCausalLM"]'], "architectures"),
    "roberta-pretraining": (["params", "--model", "roberta-large", "--set", 'architectures=["RobertaForPreTraining"]'], "architectures"),
}


def test_bad_input_is_one_error_line(tmp_path):
    """Exit status 2, one stderr line starting ``error:`` naming the field, nothing on stdout."""
    no_d_model = preset_config("flan-t5-base")
    del no_d_model["d_model"]
    path = tmp_path / "t5.json"
    path.write_text(json.dumps(no_d_model))
    whisper = tmp_path / "whisper.json"
    whisper.write_text(json.dumps(BASES["whisper"]))
    files = {"{t5_no_d_model}": str(path), "{whisper}": str(whisper)}
    cases = {k: ([files.get(a, a) for a in args], needle) for k, (args, needle) in REFUSED.items()}
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(cases, pool.map(lambda k: _cli(cases[k][0]), cases)))
    for name, result in results.items():
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (name, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:") and cases[name][1] in lines[0], (name, result.stderr)
        assert result.stdout == "", name


def test_compare_sets_an_encoder_decoder_beside_a_decoder_only_model():
    """Hand derivation: flan-t5-base caches 36864 bytes per target token and as much per
    source token (2·12 layers·12 heads·64·2 bytes); gpt2-medium 2·24·1024·2 = 98304 per
    token and no source. ``source_len`` applies to the encoder-decoder only; without it the
    prompt is the source."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.comparison import compare

    h100 = get_accelerator("h100-sxm")
    frame = compare(["flan-t5-base", "gpt2-medium"], h100, context=512, source_len=256)
    t5, gpt2 = frame.iloc[0], frame.iloc[1]
    assert t5["kv_cache_bytes"] == 36864 * (512 + 256)
    assert gpt2["kv_cache_bytes"] == 98304 * 512
    assert t5["total_params"] == registry()["flan-t5-base"]["total_params"]
    assert (t5["prompt"], gpt2["prompt"]) == (256, 512)
    # without source_len the prompt (here the context) is the source
    t5 = compare(["flan-t5-base"], h100, context=300).iloc[0]
    assert t5["kv_cache_bytes"] == 36864 * (300 + 300) and t5["prompt"] == 300


def test_position_and_token_tables_of_both_stacks():
    """Hand derivation for bart-large: each stack has its own position table of
    (1024 + 2) × 1024 rows (the offset of 2), and one token table of 50265 × 1024 serves
    both stacks and the head."""
    row = api.params(load("bart-large")).iloc[0]
    assert row["position_embedding_params"] == 2 * (1024 + 2) * 1024
    assert row["token_embedding_params"] == 50265 * 1024
    assert row["lm_head_params"] == 0


def test_whisper_real_cache_bytes():
    """Whisper (its ``generate`` needs a Whisper generation config, so two forwards stand in
    for it): the decoder's first pass over 3 target tokens, then one decode step. The
    ``EncoderDecoderCache`` then holds 4 target tokens per decoder layer (self) and the
    ``max_source_positions`` encoder outputs (cross), as ``perfmodel kv-cache`` says."""
    transformers = _transformers()
    import torch

    data = BASES["whisper"]
    torch.manual_seed(0)
    model = hf_model(data).eval()
    features = torch.randn(B, data["num_mel_bins"], 2 * data["max_source_positions"])
    with torch.no_grad():
        out = model(input_features=features, decoder_input_ids=torch.ones(B, 3, dtype=torch.long), use_cache=True)
        out = model(encoder_outputs=(out.encoder_last_hidden_state,), decoder_input_ids=torch.ones(B, 1, dtype=torch.long),
                    past_key_values=out.past_key_values, use_cache=True)
    cache = out.past_key_values
    assert isinstance(cache, transformers.EncoderDecoderCache)

    def held(part) -> int:
        return sum(t.numel() * t.element_size() for layer in part.layers for t in (layer.keys, layer.values))

    sc = Scenario(from_config(data), Options(phase="prefill"), batch=B, seq=4, context=0, kv_dtype="fp32")
    row = api.kv_cache(sc).iloc[0]
    assert row["source_len"] == data["max_source_positions"]
    assert held(cache.self_attention_cache) == row["self_kv_cache_bytes"]
    assert held(cache.cross_attention_cache) == row["cross_kv_cache_bytes"]


def test_architecture_refuses_cross_attention_without_an_encoder():
    """Cross-attention reads an encoder's output: a stack without one is refused, naming the field."""
    from dataclasses import replace

    from perfmodel.errors import ConfigError

    arch = from_config(BASES["t5"])
    with pytest.raises(ConfigError, match="cross_attention"):
        replace(arch, encoder=None)
