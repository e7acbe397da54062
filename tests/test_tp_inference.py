"""Multi-GPU inference rows: how a benchmark's inputs route through a mixture of experts.

TensorRT-LLM's ``gptSessionBenchmark`` (benchmarks/cpp/gptSessionBenchmark.cpp) builds its
input as ``std::vector<int32_t> inputsHost(batchSize * maxInputLength, padId)`` and samples
greedily (``topK = 1``). With one token everywhere every value vector is equal, so attention
returns that value at every position whatever its weights, and by induction over the layers
every token of a step carries one hidden state: all route to the same ``k`` experts. Uniform
routing of ``n`` distinct tokens to ``k`` of ``E`` experts leaves an expert unread with
probability ``(1 − k/E)^n`` (derived here by hand).
"""

from __future__ import annotations

import pytest

from perfmodel import metrics
from perfmodel.evaluate import bindings, value
from perfmodel.hf_config import from_config
from perfmodel.options import Options
from perfmodel.table import build

#: a two-layer Mixtral: 8 experts, top 2, d = 64, d_e = 96 (gate and up fused, then down)
MIXTRAL = dict(model_type="mixtral", vocab_size=100, hidden_size=64, intermediate_size=96, num_attention_heads=4,
               num_key_value_heads=2, num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=2)
E, K, D, D_E, LAYERS = 8, 2, 64, 96, 2
#: bytes of one expert's three bf16 matrices (gate, up: d x d_e; down: d_e x d)
EXPERT_BYTES = 3 * D * D_E * 2


def _expert_weight_bytes(options: Options, batch: int, seq: int = 1) -> float:
    arch = from_config(MIXTRAL)
    ops = [op for op in build(arch, options).ops if op.name.startswith("moe.experts.") and op.pass_ == "fwd"
           and op.weight_bytes != 0]
    total = metrics.totals(ops, ("weight_bytes",))["weight_bytes"]
    return float(value(total, bindings(arch, b=batch, s=seq, t=128 if options.phase == "decode" else 0)))


def test_identical_sequences_read_the_experts_of_one_token_per_step():
    # decode, 32 sequences: distinct ones touch 8·(1 − (6/8)^32) experts a layer; one token
    # everywhere touches exactly k = 2, and so does a 4 x 16-token prefill of it
    distinct = _expert_weight_bytes(Options(phase="decode"), 32)
    identical = _expert_weight_bytes(Options(phase="decode", identical_sequences=True), 32)
    assert distinct == pytest.approx(E * (1 - (1 - K / E) ** 32) * EXPERT_BYTES * LAYERS)
    assert identical == pytest.approx(K * EXPERT_BYTES * LAYERS)
    prefill = _expert_weight_bytes(Options(phase="prefill", identical_sequences=True), 4, seq=16)
    assert prefill == pytest.approx(K * EXPERT_BYTES * LAYERS)


def test_gpt_session_benchmark_rows_run_identical_sequences():
    # the e2e rows of gptSessionBenchmark (TensorRT-LLM 0.6.1 and 0.9 static tables) and no others
    from perfmodel.hardware import e2e

    frame = e2e.rows()
    frame = frame[frame["scored"]]
    for _, r in frame.iterrows():
        expected = "gptSessionBenchmark" in str(r["engine"])
        assert e2e._scenario(r).options.identical_sequences is expected, r["engine"]
