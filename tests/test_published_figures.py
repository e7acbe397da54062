"""Parameter counts against the figures model publishers print, at the precision they
print them, and the GPT-2 Medium per-layer walk-through derived by hand.

Sources (wording quoted in /tmp/research/figures.md §3-4):
- Mixtral of Experts (arXiv 2401.04088), abstract: "each token has access to 47B
  parameters, but only uses 13B active parameters"; Mistral's announcement: "46.7B total
  parameters but only uses 12.9B parameters per token".
- deepseek-ai/DeepSeek-V3 README: "671B total parameters with 37B activated for each
  token"; README_WEIGHTS: "0.9B for Embedding and 0.9B for the output Head".
- DeepSeek-V2 paper (arXiv 2405.04434) App. B.1: "DeepSeek-V2-Lite comprises 15.7B total
  parameters, of which 2.4B are activated for each token".
- Qwen1.5-MoE-A2.7B model card: "14.3B parameters in total and 2.7B activated
  parameters during runtime".
- Qwen3-30B-A3B model card: "30.5B in total and 3.3B activated", "Number of Parameters
  (Non-Embedding): 29.9B"; Qwen's naming rule (QwenLM/Qwen3 concepts.md): the number
  after "A" is the activated parameters.

perfmodel's ``active_params`` counts every parameter a token touches, including the
input-embedding row lookup and the LM head. Which of these a publisher's "activated"
count includes is stated per test; the counts are compared by rounding ours to the
publication's printed precision (round half up).
"""

from __future__ import annotations

import contextlib
import io
import json
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import pytest

from perfmodel import cli

B = 10**9


def run_json(*argv: str) -> list[dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main([*argv, "--format", "json"])
    return json.loads(out.getvalue())


def counts(model: str) -> dict:
    (row,) = run_json("params", "--model", model)
    return row


def printed(count: int, unit: int, places: int, rounding=ROUND_HALF_UP) -> Decimal:
    """``count`` in ``unit`` (1e9 for "B") with ``places`` decimals, as a publication prints it."""
    return (Decimal(count) / unit).quantize(Decimal(1).scaleb(-places), rounding=rounding)


def test_mixtral_8x7b():
    """Mistral counts the input embedding and the (untied) LM head in both figures:
    without them the active count would be 12.6B, not 12.9B."""
    c = counts("mixtral-8x7b")
    assert printed(c["total_params"], B, 1) == Decimal("46.7")
    assert printed(c["active_params"], B, 1) == Decimal("12.9")
    assert printed(c["total_params"], B, 0) == Decimal("47")  # paper
    assert printed(c["active_params"], B, 0) == Decimal("13")  # paper
    assert printed(c["active_non_embedding_params"], B, 1) == Decimal("12.6")  # not what is published


def test_deepseek_v3():
    """"37B activated" excludes the input-embedding lookup (a gather, no matmul): our
    active count less the 0.9B embedding is 36.6B -> 37B; counting the lookup too gives
    37.6B -> 38B. The total (671B) counts every weight of the main model; transformers
    does not build the multi-token-prediction module (the Hub's 685B includes its 14B).

    Not checked: README_WEIGHTS's "36.7B (including 0.9B for Embedding and 0.9B for the
    output Head)" -- our count including both is 37.55B, and it does not say what else
    it leaves out."""
    c = counts("deepseek-v3")
    assert printed(c["total_params"], B, 0) == Decimal("671")
    assert printed(c["active_params"] - c["token_embedding_params"], B, 0) == Decimal("37")
    assert printed(c["active_params"], B, 0) == Decimal("38")  # the lookup must be excluded
    assert printed(c["token_embedding_params"], B, 1) == Decimal("0.9")
    assert printed(c["lm_head_params"], B, 1) == Decimal("0.9")


def test_deepseek_v2_lite():
    """Total 15.7B. The activated 2.4B matches our count only without the input-embedding
    lookup (as for V3: 2.451B) and only if truncated at 0.1B -- rounding would print 2.5B;
    with the lookup it is 2.66B, which neither rounding nor truncation makes 2.4B. The
    paper does not say how it rounds, so this pins the count to [2.4B, 2.5B)."""
    c = counts("deepseek-v2-lite")
    assert printed(c["total_params"], B, 1) == Decimal("15.7")
    active = c["active_params"] - c["token_embedding_params"]
    assert printed(active, B, 1, ROUND_DOWN) == Decimal("2.4")
    assert printed(c["active_params"], B, 1, ROUND_DOWN) == Decimal("2.6")  # with the lookup: not 2.4


def test_qwen1_5_moe_a2_7b():
    """Qwen counts the embedding and the untied LM head in both figures (the blog's
    separate "non-embedding" figure leaves them out)."""
    c = counts("qwen1.5-moe-a2.7b")
    assert printed(c["total_params"], B, 1) == Decimal("14.3")
    assert printed(c["active_params"], B, 1) == Decimal("2.7")  # also the "A2.7B" in the name


def test_qwen3_30b_a3b():
    """Total 30.5B and non-embedding 29.9B (embedding and untied head excluded) round
    exactly. The card's "3.3B activated" is our 3.353B (embedding and head included)
    truncated, not rounded (rounding gives 3.4B), so it is checked as [3.3B, 3.4B); the
    name's "A3B" is the same count rounded to whole billions."""
    c = counts("qwen3-30b-a3b")
    assert printed(c["total_params"], B, 1) == Decimal("30.5")
    assert printed(c["non_embedding_params"], B, 1) == Decimal("29.9")
    assert printed(c["active_params"], B, 1, ROUND_DOWN) == Decimal("3.3")
    assert printed(c["active_params"], B, 0) == Decimal("3")


# ---------------------------------------------------------------------------------------
# GPT-2 Medium, by hand: d = 1024, 24 layers, 16 heads, vocabulary 50257, 1024 positions
# (config.json: n_embd, n_layer, n_head, vocab_size, n_positions), tied LM head.

D, LAYERS, HEADS, VOCAB, POSITIONS = 1024, 24, 16, 50257, 1024
# attention: c_attn d -> 3d with bias, c_proj d -> d with bias
ATTENTION = (D * 3 * D + 3 * D) + (D * D + D)  # 4d² + 4d
# MLP: c_fc d -> 4d with bias, c_proj 4d -> d with bias
FFN = (D * 4 * D + 4 * D) + (4 * D * D + D)  # 8d² + 5d
NORMS = 2 * (2 * D)  # ln_1, ln_2: weight and bias each
TOTAL = VOCAB * D + POSITIONS * D + LAYERS * (ATTENTION + FFN + NORMS) + 2 * D  # + ln_f; head tied


def test_gpt2_medium_hand_derivation():
    assert ATTENTION == 4 * D**2 + 4 * D == 4_198_400
    assert FFN == 8 * D**2 + 5 * D == 8_393_728
    assert TOTAL == 354_823_168


def test_gpt2_medium_shapes_walkthrough():
    """``perfmodel shapes --model gpt2-medium``: per layer 4,198,400 attention and
    8,393,728 FFN parameters (4.2M and 8.4M), about 355M in all."""
    rows = run_json("shapes", "--model", "gpt2-medium")
    per_layer = {}
    for r in rows:
        if r["count"] == LAYERS:
            per_layer[r["block"]] = per_layer.get(r["block"], 0) + r["params"]
    assert per_layer["attention"] == ATTENTION
    assert per_layer["ffn"] == FFN
    assert per_layer["norm"] == NORMS
    assert sum(r["total_params"] for r in rows) == TOTAL
    assert counts("gpt2-medium")["total_params"] == TOTAL
    assert round(ATTENTION / 1e6, 1) == 4.2 and round(FFN / 1e6, 1) == 8.4 and round(TOTAL / 1e6) == 355


def test_gpt2_medium_against_raschka():
    """S. Raschka, Build a Large Language Model (From Scratch), ch. 4 exercise 4.2
    (rasbt/LLMs-from-scratch): "gpt2-medium ... trainable parameters considering weight
    tying: 354,749,440". That model has no query/key/value biases (qkv_bias=False);
    adding back the 3d bias per layer gives the Hugging Face model's count."""
    assert counts("gpt2-medium")["total_params"] - LAYERS * 3 * D == 354_749_440


@pytest.mark.parametrize("name, published", [("gpt2", "124"), ("gpt2-medium", "355")])
def test_gpt2_sizes_in_millions(name, published):
    """The openai-community/gpt2 and gpt2-medium model cards on the Hugging Face Hub:
    "the smallest version of GPT-2, with 124M parameters", "the 355M parameter version"."""
    assert printed(counts(name)["total_params"], 10**6, 0) == Decimal(published)
