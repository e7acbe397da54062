"""KV-cache size: perfmodel against the DeepSeek-V2 paper's Table 1 and against the
cache tensors a real ``transformers`` model fills.

Paper: DeepSeek-AI, "DeepSeek-V2" (arXiv 2405.04434), Table 1, KV cache per token in
elements: MHA ``2·n_h·d_h·l``, GQA ``2·n_g·d_h·l``, MQA ``2·d_h·l``, MLA
``(d_c + d_h^R)·l ≈ (9/2)·d_h·l``; "For DeepSeek-V2, d_c is set to 4d_h and d^R_h is set
to d_h/2. So, its KV cache is equal to GQA with only 2.25 groups". V2: l=60, n_h=128,
d_h=128, d_c=512, d_h^R=64 (Sec. 3.1.2); V2-Lite: l=27, n_h=16, d_h=128 (App. B.1).
Table 9 prints, in elements per token: Small MoE w/ MHA 110.6K, w/ MLA 15.6K; Large
MoE w/ MLA 34.6K. Bytes = elements × bytes per element of the cache dtype.

Real cache: tiny random-weight models run a prompt with ``use_cache=True``; the bytes
of every cached tensor (``numel() * element_size()`` over ``past_key_values.layers``'
keys and values) must equal ``perfmodel kv-cache`` for the same config, batch and
context, in the same dtype (fp32 here).
"""

from __future__ import annotations

import contextlib
import io
import json
from fractions import Fraction

import pytest

from perfmodel import cli
from conftest import hf_config, preset_config

BYTES = {"fp32": 4, "bf16": 2, "fp8": 1}


def kv_cache_cli(model: str, context: int, *, batch: int = 1, kv_dtype: str = "bf16", mla: str | None = None, sets: dict | None = None) -> dict:
    """One row of ``perfmodel kv-cache --format json`` (run in-process)."""
    argv = ["kv-cache", "--model", model, "--context", str(context), "--batch", str(batch), "--kv-dtype", kv_dtype, "--format", "json"]
    if mla:
        argv += ["--mla", mla]
    for key, value in (sets or {}).items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(argv)
    (row,) = json.loads(out.getvalue())
    return row


# ---------------------------------------------------------------------------------------
# DeepSeek-V2 Table 1, evaluated by hand for the paper's own configurations.

V2 = dict(l=60, n_h=128, d_h=128, d_c=512, d_hR=64)  # Sec. 3.1.2
V2_LITE = dict(l=27, n_h=16, d_h=128, d_c=512, d_hR=64)  # App. B.1


def standard_attention(p: dict, kv_heads: int) -> dict:
    """--set overrides turning the llama-3-8b preset into MHA/GQA/MQA with the paper's
    l, n_h and d_h (hidden size does not enter the cache)."""
    return {
        "num_hidden_layers": p["l"],
        "num_attention_heads": p["n_h"],
        "num_key_value_heads": kv_heads,
        "head_dim": p["d_h"],
        "hidden_size": 5120,
    }


def mla(p: dict) -> dict:
    """--set overrides on the deepseek-v2-lite preset (MLA) for the paper's MLA sizes."""
    return {"num_hidden_layers": p["l"], "num_attention_heads": p["n_h"], "kv_lora_rank": p["d_c"], "qk_rope_head_dim": p["d_hR"]}


@pytest.mark.parametrize("kv_dtype", ["bf16", "fp8", "fp32"])
@pytest.mark.parametrize("paper", [V2, V2_LITE], ids=["V2", "V2-Lite"])
def test_table1_per_token(paper, kv_dtype):
    B = BYTES[kv_dtype]
    l, n_h, d_h, d_c, d_hR = (paper[k] for k in ("l", "n_h", "d_h", "d_c", "d_hR"))
    n_g = 8
    expected = {
        "MHA": 2 * n_h * d_h * l,
        "GQA": 2 * n_g * d_h * l,
        "MQA": 2 * d_h * l,
        "MLA": (d_c + d_hR) * l,
    }
    ours = {
        "MHA": kv_cache_cli("llama-3-8b", 1, kv_dtype=kv_dtype, sets=standard_attention(paper, n_h)),
        "GQA": kv_cache_cli("llama-3-8b", 1, kv_dtype=kv_dtype, sets=standard_attention(paper, n_g)),
        "MQA": kv_cache_cli("llama-3-8b", 1, kv_dtype=kv_dtype, sets=standard_attention(paper, 1)),
        "MLA": kv_cache_cli("deepseek-v2-lite", 1, kv_dtype=kv_dtype, mla="absorbed", sets=mla(paper)),
    }
    for kind, elements in expected.items():
        assert ours[kind]["kv_cache_bytes_per_token"] == elements * B, kind
        assert ours[kind]["kv_cache_bytes"] == elements * B, kind  # batch 1, context 1


def test_table1_mla_is_gqa_with_2_25_groups():
    """d_c = 4·d_h and d_h^R = d_h/2 make MLA's cache (9/2)·d_h·l = GQA's 2·n_g·d_h·l at n_g = 2.25."""
    d_h = V2["d_h"]
    assert V2["d_c"] + V2["d_hR"] == Fraction(9, 2) * d_h
    mla_bytes = kv_cache_cli("deepseek-v2-lite", 1, mla="absorbed", sets=mla(V2))["kv_cache_bytes_per_token"]
    mqa_bytes = kv_cache_cli("llama-3-8b", 1, sets=standard_attention(V2, 1))["kv_cache_bytes_per_token"]
    assert Fraction(mla_bytes, mqa_bytes) == Fraction(9, 4)  # 2.25 groups of one K and one V head


def _thousands(elements: int) -> float:
    """Table 9 prints elements per token in thousands with one decimal."""
    return round(elements / 1000, 1)


def test_table9_kv_cache_per_token():
    # Small MoE w/ MLA is DeepSeek-V2-Lite itself: the shipped preset, unchanged.
    lite = kv_cache_cli("deepseek-v2-lite", 1, kv_dtype="fp8")["kv_cache_bytes_per_token"]
    assert _thousands(lite) == 15.6
    # Small MoE w/ MHA: V2-Lite's l, n_h and d_h with full multi-head attention.
    small_mha = kv_cache_cli("llama-3-8b", 1, kv_dtype="fp8", sets=standard_attention(V2_LITE, V2_LITE["n_h"]))
    assert _thousands(small_mha["kv_cache_bytes_per_token"]) == 110.6
    # Large MoE w/ MLA: DeepSeek-V2's sizes.
    large = kv_cache_cli("deepseek-v2-lite", 1, kv_dtype="fp8", sets=mla(V2))["kv_cache_bytes_per_token"]
    assert _thousands(large) == 34.6


def test_kv_cache_scales_with_batch_and_context():
    """Full attention: per-token size × context × batch (paper: 'per token')."""
    per_token = 2 * 8 * 128 * 32 * 2  # llama-3-8b: l=32, n_kv=8, d_h=128 (config.json), bf16
    row = kv_cache_cli("llama-3-8b", 4096, batch=3)
    assert row["kv_cache_bytes_per_token"] == per_token
    assert row["kv_cache_bytes"] == per_token * 4096 * 3


# ---------------------------------------------------------------------------------------
# The real cache of tiny random-weight models.

TINY = dict(hidden_size=32, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3, vocab_size=64)
FAMILIES = {
    "llama-gqa": dict(model_type="llama", **TINY),
    # Falcon-7B's layout: old decoder, multi_query (one K/V head), parallel attention
    "falcon-mqa": dict(model_type="falcon", hidden_size=32, num_attention_heads=4, num_hidden_layers=3, vocab_size=64, multi_query=True, parallel_attn=True),
    # every layer slides over a window of 4 keys
    "mistral-swa": dict(model_type="mistral", sliding_window=4, **TINY),
    # alternating: layers 0 and 2 slide (window 4), layer 1 is global
    "gemma2-alternating": dict(model_type="gemma2", head_dim=8, sliding_window=4, **TINY),
}


def run_real_cache(data: dict, batch: int, prompt: int, decode_steps: int = 0):
    """Prefill ``prompt`` tokens (then ``decode_steps`` single tokens) in fp32 on CPU;
    returns the cache bytes after each forward, the final cache and the model."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(data)).eval()
    ids = torch.randint(0, data["vocab_size"], (batch, prompt))
    sizes = []
    with torch.no_grad():
        out = model(ids, use_cache=True)
        sizes.append(cache_bytes(out.past_key_values))
        for _ in range(decode_steps):
            nxt = out.logits[:, -1:].argmax(-1)
            out = model(nxt, past_key_values=out.past_key_values, use_cache=True)
            sizes.append(cache_bytes(out.past_key_values))
    return sizes, out.past_key_values, model


def cache_bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


def write_config(tmp_path, data: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("prompt", [3, 11])  # shorter and longer than the window of 4
def test_real_cache_bytes(family, prompt, tmp_path, transformers_available):
    """After a prompt of ``prompt`` tokens and two decode steps, the cache holds, per layer,
    every token (full attention) or the last ``W − 1`` (transformers'
    ``DynamicSlidingWindowLayer`` keeps ``-sliding_window + 1:``: the next query brings
    its own key, making W); perfmodel's windowed layers keep ``min(t, W − 1)``."""
    data = FAMILIES[family]
    batch = 2
    sizes, _, _ = run_real_cache(data, batch, prompt, decode_steps=2)
    path = write_config(tmp_path, data)
    for step, real in enumerate(sizes):
        context = prompt + step
        ours = kv_cache_cli(path, context, batch=batch, kv_dtype="fp32")
        assert ours["kv_cache_bytes"] == real, (family, context)


def test_real_cache_sliding_layers_keep_window_minus_one(transformers_available):
    """The transformers behaviour the model above relies on, seen directly: after 11
    tokens a window-4 layer holds 3 tokens, a global layer all 11."""
    _, cache, _ = run_real_cache(FAMILIES["gemma2-alternating"], 1, 11)
    held = [layer.keys.shape[-2] for layer in cache.layers]
    assert held == [3, 11, 3]


def test_falcon_new_decoder_cache_difference(tmp_path, transformers_available):
    """Falcon's new decoder architecture (40B/180B) is GQA with ``num_kv_heads`` K/V heads,
    which is what perfmodel counts (what a GQA-aware runtime caches). transformers 5.23's
    FalconAttention broadcasts K/V to all ``num_attention_heads`` *before* caching
    (``_split_heads``: ``torch.broadcast_to(key, query.shape)``), so its cache is
    ``n_h / n_kv`` times ours. Checked here so the difference is explicit."""
    data = dict(model_type="falcon", hidden_size=32, num_attention_heads=4, num_hidden_layers=2, vocab_size=64,
                new_decoder_architecture=True, num_kv_heads=2)
    (real,), _, _ = run_real_cache(data, 2, 5)
    ours = kv_cache_cli(write_config(tmp_path, data), 5, batch=2, kv_dtype="fp32")
    assert ours["kv_cache_bytes"] * (4 // 2) == real
    assert ours["kv_cache_bytes"] == 2 * (2 * 2 * 8) * 5 * 2 * 4  # l·(2·n_kv·d_h)·t·b·4 bytes


# ---------------------------------------------------------------------------------------
# MLA (DeepSeek-V2/V3).

MLA_CONFIGS = {
    # V2-Lite-like: no query compression
    "deepseek_v2": dict(model_type="deepseek_v2", hidden_size=32, intermediate_size=24, num_attention_heads=4, num_hidden_layers=3,
                        vocab_size=64, kv_lora_rank=8, q_lora_rank=None, qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=6,
                        n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, n_shared_experts=1, first_k_dense_replace=1),
    "deepseek_v3": dict(model_type="deepseek_v3", hidden_size=32, intermediate_size=24, num_attention_heads=4, num_hidden_layers=3,
                        vocab_size=64, kv_lora_rank=8, q_lora_rank=12, qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=6,
                        n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, n_shared_experts=1, first_k_dense_replace=1,
                        n_group=1, topk_group=1),
}


@pytest.mark.parametrize("family", list(MLA_CONFIGS))
def test_mla_absorbed_matches_paper_and_transformers_cache(family, tmp_path, transformers_available):
    """The paper's ``(d_c + d_h^R)·l`` elements per token. transformers 5.23 caches exactly
    that -- the normalised latent ``[b, 1, t, d_c]`` as "keys" and the RoPE key
    ``[b, 1, t, d_h^R]`` as "values" -- and decompresses K/V on every step
    (``expand_kv``); older transformers cached the decompressed K/V instead."""
    data = MLA_CONFIGS[family]
    batch, prompt = 2, 5
    l, d_c, d_hR = data["num_hidden_layers"], data["kv_lora_rank"], data["qk_rope_head_dim"]
    sizes, cache, _ = run_real_cache(data, batch, prompt, decode_steps=1)
    path = write_config(tmp_path, data)
    for step, real in enumerate(sizes):
        t = prompt + step
        paper = (d_c + d_hR) * l * t * batch * BYTES["fp32"]
        ours = kv_cache_cli(path, t, batch=batch, kv_dtype="fp32", mla="absorbed")
        assert ours["kv_cache_bytes"] == paper == real
    assert [tuple(layer.keys.shape) for layer in cache.layers] == [(batch, 1, prompt + 1, d_c)] * l
    assert [tuple(layer.values.shape) for layer in cache.layers] == [(batch, 1, prompt + 1, d_hR)] * l


@pytest.mark.parametrize("family", list(MLA_CONFIGS))
def test_mla_naive_matches_transformers_decompressed_kv(family, tmp_path, transformers_available):
    """``--mla naive`` counts the decompressed K (``n_h·(d_nope + d_rope)``) and V
    (``n_h·d_v``) per token and layer: the tensors transformers' ``expand_kv`` builds
    from the cached latent (and what a cache of decompressed K/V would hold)."""
    import torch
    import transformers

    data = MLA_CONFIGS[family]
    batch, prompt = 2, 5
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(data)).eval()
    decompressed = []
    for layer in model.model.layers:
        attn = layer.self_attn
        original = attn.expand_kv

        def record(*args, _original=original):
            key, value = _original(*args)
            decompressed.append(key.numel() * key.element_size() + value.numel() * value.element_size())
            return key, value

        attn.expand_kv = record
    with torch.no_grad():
        model(torch.randint(0, data["vocab_size"], (batch, prompt)), use_cache=True)
    assert len(decompressed) == data["num_hidden_layers"]
    ours = kv_cache_cli(write_config(tmp_path, data), prompt, batch=batch, kv_dtype="fp32", mla="naive")
    assert ours["kv_cache_bytes"] == sum(decompressed)
    n_h, d_nope, d_rope, d_v = (data[k] for k in ("num_attention_heads", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"))
    assert ours["kv_cache_bytes_per_token"] == n_h * (d_nope + d_rope + d_v) * data["num_hidden_layers"] * 4


def test_deepseek_v3_preset_absorbed_cache():
    """DeepSeek-V3 config.json: 61 layers, kv_lora_rank 512, qk_rope_head_dim 64 ->
    (512 + 64)·61 = 35,136 elements per token (the paper's formula)."""
    data = preset_config("deepseek-v3")
    elements = (data["kv_lora_rank"] + data["qk_rope_head_dim"]) * data["num_hidden_layers"]
    assert elements == 35_136
    assert kv_cache_cli("deepseek-v3", 1, kv_dtype="fp8")["kv_cache_bytes_per_token"] == elements
