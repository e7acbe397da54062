"""GPT-J (model_type ``gptj``) held against the real ``transformers`` 5.23 ``GPTJForCausalLM``.

- Parameters: the shipped EleutherAI/gpt-j-6b ``config.json`` (hardware/data/e2e-configs)
  built on the meta device, ``sum(p.numel() for p in model.parameters())``; no tolerance.
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` counting the same 28-layer model run
  on fake tensors (nothing allocated) with eager attention: every-token logits, a
  generation prefill (last logits only) and one decode step against its cache; and a
  shrunk config with ``n_inner`` set and ``rotary_dim`` equal to the head size.
- Bad input: the real command line, one ``error:`` line naming the field.

Expected values come only from transformers and the counter, never from perfmodel.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import (
    REPO,
    counted_with_result,
    fake_hf_model,
    hf_meta_model,
    hf_numel,
    our_matmul_flops,
    perfmodel_params,
    token_ids,
)
from perfmodel.hf_config import from_config, read_config_file
from perfmodel.options import Options

GPTJ_6B = REPO / "hardware" / "data" / "e2e-configs" / "EleutherAI--gpt-j-6b.json"
B, S, PROMPT = 1, 8, 8

#: GPT-J's shape shrunk, with the fields the 6B file leaves to defaults set: an explicit
#: MLP width (not 4·n_embd), ``rotary_dim`` = the 16-wide head (RoPE on all of it), a tied head
SMALL = dict(
    model_type="gptj", vocab_size=100, n_embd=64, n_head=4, n_layer=2, n_positions=64,
    n_inner=96, rotary_dim=16, tie_word_embeddings=True,
)


def test_total_params_equal_transformers(transformers_available):
    data = read_config_file(GPTJ_6B)
    model = hf_meta_model(data)
    assert type(model).__name__ == "GPTJForCausalLM"
    assert perfmodel_params(data, "gpt-j-6b")["total_params"] == hf_numel(model)


def test_small_variant_params_equal_transformers(transformers_available):
    model = hf_meta_model(SMALL)
    assert perfmodel_params(SMALL, "gptj-small")["total_params"] == hf_numel(model)


def _flops(data: dict):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    model, mode = fake_hf_model(data)
    with mode, torch.no_grad():
        every, _ = counted_with_result(lambda: model(input_ids=token_ids(B, S), use_cache=False))
        prefill, out = counted_with_result(lambda: model(input_ids=token_ids(B, PROMPT), logits_to_keep=1))
        decode, _ = counted_with_result(lambda: model(input_ids=token_ids(B, 1), past_key_values=out.past_key_values))
    return every, prefill, decode


@pytest.mark.parametrize("which", ["gpt-j-6b", "small"])
def test_forward_matmul_flops_match_flop_counter(which):
    data = read_config_file(GPTJ_6B) if which == "gpt-j-6b" else SMALL
    every, prefill, decode = _flops(data)
    arch = from_config(data)
    assert every == our_matmul_flops(arch, Options(phase="prefill", mask="none", all_logits=True), batch=B, seq=S)
    assert prefill == our_matmul_flops(arch, Options(phase="prefill", mask="none"), batch=B, seq=PROMPT)
    assert decode == our_matmul_flops(arch, Options(phase="decode", mask="none"), batch=B, seq=1, context=PROMPT)


@pytest.mark.parametrize("rotary_dim", [32, None])  # wider than the 16-wide heads; null (GPTJConfig refuses it)
def test_bad_rotary_dim_is_refused(tmp_path, rotary_dim):
    path = tmp_path / "gptj.json"
    path.write_text(json.dumps({**SMALL, "rotary_dim": rotary_dim}))
    result = subprocess.run(
        [sys.executable, "-m", "perfmodel", "params", "--model", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "rotary_dim" in lines[0], result.stderr
    assert result.stdout == ""
