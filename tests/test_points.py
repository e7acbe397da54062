"""``perfmodel.point``: the compiled quantity agrees with exact evaluation of the same
expression (the one ``formula`` prints) and with ``roofline_report``; counts are ints.
Its speed is measured in benchmarks/bench.py (``per-point``), not here."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.hardware.catalog import get_accelerator
from perfmodel.evaluate import value

H100 = get_accelerator("h100")


@pytest.mark.parametrize("model", ["llama-3-8b", "mixtral-8x7b", "gemma-2-9b", "gpt2"])
def test_point_equals_exact_evaluation(model):
    sc = pm.Scenario(pm.load_model(model), pm.Options(phase="decode"), batch=1, context=100, accelerator=H100)
    for batch, context in ((1, 0), (7, 900), (64, 1000)):
        at = sc.but(batch=batch, context=context)
        exact = value(pm.quantity("time_s").build(at), at.values)
        assert pm.point(sc, "time_s", batch=batch, context=context) == pytest.approx(exact, rel=1e-12)
        assert pm.roofline_report(at, by="total")["time_s"].iloc[0] == pytest.approx(exact, rel=1e-12)


def test_point_counts_are_exact_ints():
    """llama-3-8b: 131,072 KV bytes per token (32 layers · 2 · 8 heads · 128 · 2 bytes);
    batch 3 after a decode step at context 100 holds 3 · 101 tokens."""
    sc = pm.Scenario(pm.load_model("llama-3-8b"), pm.Options(phase="decode"))
    got = pm.point(sc, "kv_cache_bytes", batch=3, context=100)
    assert got == 3 * 101 * 131_072 and type(got) is int


def test_point_refuses_what_a_scenario_refuses():
    sc = pm.Scenario(pm.load_model("gpt2"), pm.Options(phase="decode"), accelerator=H100)
    with pytest.raises(pm.PerfmodelError, match="exceeds max_position_embeddings=1024"):
        pm.point(sc, "time_s", context=1024)
    with pytest.raises(pm.PerfmodelError, match="batch: 0 is not a valid count"):
        pm.point(sc, "time_s", batch=0)
