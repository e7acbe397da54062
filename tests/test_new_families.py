"""The structures the newer families brought (attention sinks, biased experts and router,
whole-projection q/k norms, parallel blocks, NoPE layers), held against independent sources.

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` counting the real ``transformers``
  5.23 model of small gpt-oss, Gemma-3, StarCoder2, Cohere and Phi-2 configs, run on fake
  tensors with eager attention (``mask=none``) and ``batched_mm`` experts, as in
  ``test_flop_counter.py`` (whose docstring says what the counter sees).
- The vector work a sink and an expert bias add: derived by hand from the modelling code.
- Bad input: the real command line, one ``error:`` line naming the field.

Parameter counts and windows of these families are checked in ``test_config_families.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from conftest import REPO, counted_with_result, fake_hf_model, our_matmul_flops, token_ids
from perfmodel import metrics
from perfmodel.evaluate import bindings, value
from perfmodel.hf_config import from_config
from perfmodel.options import Options
from perfmodel.table import build

B, S = 2, 16

#: small configs (Phi-2-like last): gpt-oss (sinks, biased experts and router, sliding/full alternating,
#: window 8 < the 12-token prompt); Gemma-3 (per-head q/k norms, four norms, a full layer
#: every 2nd); StarCoder2 (biases everywhere, plain MLP, window 8); Cohere (parallel block,
#: per-head q/k LayerNorms, tied head)
CONFIGS = {
    "gpt_oss": dict(
        model_type="gpt_oss", vocab_size=100, hidden_size=64, intermediate_size=48, head_dim=16,
        num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=8,
    ),
    "gemma3_text": dict(
        model_type="gemma3_text", vocab_size=100, hidden_size=64, intermediate_size=96, head_dim=16,
        num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=4, sliding_window=8,
        sliding_window_pattern=2,
    ),
    "starcoder2": dict(
        model_type="starcoder2", vocab_size=100, hidden_size=64, intermediate_size=96,
        num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, sliding_window=8,
    ),
    "cohere": dict(
        model_type="cohere", vocab_size=100, hidden_size=64, intermediate_size=96,
        num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, use_qk_norm=True,
    ),
    # phi-2's shape, shrunk: partial RoPE (0.4), biases everywhere including the LM head
    "phi": dict(
        model_type="phi", vocab_size=100, hidden_size=80, intermediate_size=320, num_attention_heads=4,
        num_hidden_layers=2, partial_rotary_factor=0.4,
    ),
}
PROMPT = 12


def ours(arch, options: Options, *, seq: int, context: int = 0, passes=("fwd",)) -> int:
    """perfmodel's matmul FLOPs over the ops of ``passes``."""
    return our_matmul_flops(arch, options, batch=B, seq=seq, context=context, passes=passes)


@pytest.mark.parametrize("family", CONFIGS)
def test_flop_counter_matches(family):
    """A forward with every token's logits, a generation prefill of ``PROMPT`` tokens
    (last logits only) and a decode step against the filled ``DynamicCache``: the windowed
    layers' cache holds ``W − 1`` tokens, so the decode reads ``min(t, W − 1) + 1`` keys there."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    config = CONFIGS[family]
    arch = from_config(config)
    model, mode = fake_hf_model(config)
    with mode, torch.no_grad():
        every, _ = counted_with_result(lambda: model(input_ids=token_ids(B, S), use_cache=False))
        prefill, out = counted_with_result(lambda: model(input_ids=token_ids(B, PROMPT), logits_to_keep=1))
        decode, _ = counted_with_result(lambda: model(input_ids=token_ids(B, 1), past_key_values=out.past_key_values))
    assert every == ours(arch, Options(phase="prefill", mask="none", all_logits=True), seq=S)
    assert prefill == ours(arch, Options(phase="prefill", mask="none"), seq=PROMPT)
    assert decode == ours(arch, Options(phase="decode", mask="none"), seq=1, context=PROMPT)


def test_gpt_oss_train_step_matches():
    """Forward + ``loss.backward()`` of the gpt-oss config: sinks, expert and router biases
    add no matmul; every projection's backward is twice its forward (naive attention: eager
    attention's backward does not recompute the scores)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    config = CONFIGS["gpt_oss"]
    model, mode = fake_hf_model(config)
    with mode:
        model.train()
        tokens = token_ids(B, S)
        got, _ = counted_with_result(lambda: model(input_ids=tokens, labels=tokens, use_cache=False).loss.backward())
    options = Options(phase="train", mask="none", attention_impl="naive")
    assert got == ours(from_config(config), options, seq=S, passes=("fwd", "bwd"))


def _op(arch, name: str, field: str, options: Options, **step) -> int:
    ops = [op for op in build(arch, options).ops if op.name == name and op.pass_ == "fwd"]
    return value(metrics.totals(ops, (field,))[field], bindings(arch, **step))


def test_sinks_add_one_logit_per_query_row():
    """gpt-oss's ``eager_attention_forward`` concatenates one sink column to each query
    row's scores and takes the softmax over ``keys + 1``: per layer ``b·n_h·s`` more
    softmax elements (5 FLOPs each, ``ELEMENTWISE_FLOPS["softmax"]``), and the ``n_h``
    sink logits are parameters read once per layer."""
    arch = from_config(CONFIGS["gpt_oss"])
    plain = replace(
        arch,
        layers=tuple(replace(layer, attention=replace(layer.attention, sinks=False)) for layer in arch.layers)
    )
    options = Options(phase="prefill", mask="none")
    step = dict(b=B, s=S, t=0)
    heads, layers = 4, 2
    extra = _op(arch, "attn.softmax", "vector_flops", options, **step) - _op(plain, "attn.softmax", "vector_flops", options, **step)
    assert extra == 5 * B * heads * S * layers
    sink_bytes = _op(arch, "attn.softmax", "weight_bytes", options, **step)
    assert sink_bytes == heads * layers * 2  # bf16 weights
    params = value(metrics.params(build(arch, options))["total_params"], arch.symbol_values)
    plain_params = value(metrics.params(build(plain, options))["total_params"], plain.symbol_values)
    assert params - plain_params == heads * layers


def test_expert_biases_are_vector_work_on_routed_rows():
    """Each of the ``b·s·k`` routed rows adds the chosen expert's bias after its gate-up
    (``2·d_e`` outputs) and down (``d`` outputs) products (``_batched_linear`` with bias in
    transformers' ``batched_mm_experts_forward``); the router adds its bias to ``E`` logits
    per token (``F.linear(x, weight, bias)``)."""
    arch = from_config(CONFIGS["gpt_oss"])
    options = Options(phase="prefill", mask="none")
    step = dict(b=B, s=S, t=0)
    d, d_e, k, n_experts, layers = 64, 48, 2, 4, 2
    assert _op(arch, "moe.experts.gate_up_proj", "vector_flops", options, **step) == B * S * k * 2 * d_e * layers
    assert _op(arch, "moe.experts.down_proj", "vector_flops", options, **step) == B * S * k * d * layers
    assert _op(arch, "moe.router", "vector_flops", options, **step) == B * S * n_experts * layers


def _cli(config: dict, tmp_path, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "perfmodel", "params", "--model", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


#: variants transformers cannot run (or that are not a causal decoder): the field named
REFUSED = {
    "olmoe_head_dim": ({**CONFIGS["starcoder2"], "model_type": "olmoe", "num_experts": 4, "num_experts_per_tok": 2, "head_dim": 8}, "head_dim"),
    "gemma3_bidirectional": ({**CONFIGS["gemma3_text"], "use_bidirectional_attention": True}, "use_bidirectional_attention"),
    "smollm3_no_rope_layers": ({**CONFIGS["starcoder2"], "model_type": "smollm3", "no_rope_layers": [1]}, "no_rope_layers"),
    "gpt_oss_sliding_without_window": ({**CONFIGS["gpt_oss"], "sliding_window": None, "layer_types": ["sliding_attention", "full_attention"]}, "sliding_window"),
}


def test_unsupported_variants_are_refused(tmp_path):
    """One ``error:`` line on stderr naming the field, exit status 2 (CLI.md conventions)."""
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(REFUSED, pool.map(lambda n: _cli(REFUSED[n][0], tmp_path, n), REFUSED)))
    for name, result in results.items():
        field = REFUSED[name][1]
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0], (name, result.stderr)
        assert result.stdout == ""
