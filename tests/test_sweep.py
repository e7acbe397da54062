"""Sweeps: the lambdified numpy evaluation over a grid must equal, point by point, the
exact sympy evaluation (``evaluate.value``) of the same quantity with the bindings of a
scenario built at that point, to a relative 1e-9; one quantity is also checked against
a hand derivation from the model's config.json."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from perfmodel.hardware.catalog import get_accelerator
from perfmodel.errors import PerfmodelError
from perfmodel.evaluate import value
from perfmodel.options import Options
from perfmodel.presets import load_model, preset_path
from perfmodel.quantities import lookup
from perfmodel.scenario import Scenario
from perfmodel.sweeps import sweep

H100 = get_accelerator("h100-sxm")


def _scenario(model: str, phase: str, **kw) -> Scenario:
    return Scenario(load_model(model), Options(phase=phase), accelerator=H100, **kw)


def _exact(expr, sc: Scenario, row) -> int | float:
    """Exact sympy evaluation at one grid point, bound by a scenario built there."""
    at = sc.but(batch=int(row.batch), seq=int(row.seq), context=int(row.context))
    return value(expr, at.values)


CASES = [
    # dense decode; batches on both sides of each operator's compute/memory switch (Max)
    ("llama-3-8b", "decode", "time_s", dict(batch="1..1024:x4", context="1..128k:x8")),
    ("llama-3-8b", "decode", "tokens_per_s", dict(batch="1,3,300,1000", context="0,5,4k,100k")),
    ("llama-3-8b", "decode", "arithmetic_intensity", dict(batch="1..512:x8", context="1k..64k:x4")),
    # sliding-window layers hold min(t, W - 1) tokens: contexts either side of W = 4096
    ("gemma-2-9b", "decode", "kv_cache_bytes", dict(batch="1,7", context="4000..4200:50")),
    ("gemma-2-9b", "decode", "time_s", dict(batch="1,64", context="4000..4200:50")),
    # MoE: expected touched experts is not linear in the batch
    ("qwen1.5-moe-a2.7b", "decode", "time_s", dict(batch="1..256:x2", context="1k,8k")),
    # prefill over new tokens, training memory
    ("llama-3-8b", "prefill", "flops", dict(batch="1,4", seq="128..8k:x4")),
    ("gpt2", "train", "total_bytes", dict(batch="1..16:x2", seq="64..1024:x4")),
]


@pytest.mark.parametrize("model, phase, metric, grids", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_lambdify_matches_exact(model, phase, metric, grids):
    sc = _scenario(model, phase)
    frame = sweep(sc, metric, **grids)
    rng = np.random.default_rng(0)
    rows = frame.iloc[sorted(rng.choice(len(frame), size=min(10, len(frame)), replace=False))]
    expr = lookup(metric).build(sc)
    for row in rows.itertuples():
        assert row.value == pytest.approx(_exact(expr, sc, row), rel=1e-9, abs=0), row


def test_kv_cache_by_hand():
    """llama-3-8b config.json: 32 layers, 8 KV heads, head_dim 4096/32 = 128; bf16 = 2
    bytes; K and V: 2·32·8·128·2 = 131072 bytes per token per sequence, exact ints."""
    cfg = json.loads(preset_path("llama-3-8b").read_text())
    per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * (cfg["hidden_size"] // cfg["num_attention_heads"]) * 2
    assert per_token == 131072
    frame = sweep(_scenario("llama-3-8b", "decode"), "kv_cache_bytes", batch=[1, 8, 64], context="1k..128k:x2")
    assert len(frame) == 3 * 8
    assert list(frame.columns) == ["model", "phase", "batch", "seq", "context", "metric", "unit", "value", "memory_needed_bytes", "capacity_bytes", "fits"]
    assert frame["value"].dtype == np.int64
    # with an accelerator each point says whether it fits: 8,030,261,248 bf16 weights
    # (Meta's model card: 8.03B) are 16.06 GB; batch 64 at 128k holds 64·131073·131072
    # bytes of cache = 1.1 TB, far above the H100's 80 GiB; batch 1 at 1k is 16.2 GB
    small = frame[(frame.batch == 1) & (frame.context == 1024)].iloc[0]
    big = frame[(frame.batch == 64) & (frame.context == 131072)].iloc[0]
    assert small.fits and small.memory_needed_bytes >= 8_030_261_248 * 2 + 1025 * per_token
    assert not big.fits and big.memory_needed_bytes >= 64 * 131073 * per_token > 80 * 2**30
    for row in frame.itertuples():
        # a decode step holds the cache after it: context + 1 (the new token's K and V)
        assert row.value == row.batch * (row.context + 1) * per_token
        assert type(row.value) in (int, np.int64)


def test_long_format_order_and_constant_quantity():
    """One row per point, batch-major; a quantity free of b, s, t repeats its value."""
    frame = sweep(_scenario("gpt2", "decode"), "total_params", batch="1,2", context="0,10,20")
    assert list(zip(frame["batch"], frame["context"])) == [(1, 0), (1, 10), (1, 20), (2, 0), (2, 10), (2, 20)]
    assert frame["value"].nunique() == 1 and (frame["seq"] == 1).all()


def test_million_points_cap_and_scenario_checks():
    sc = _scenario("llama-3-8b", "decode")
    with pytest.raises(PerfmodelError, match="more than the limit"):
        sweep(sc, "time_s", batch="1..4k", context="1..4k")  # 4096² = 16.7 million > 10^7
    with pytest.raises(PerfmodelError, match="max_position_embeddings=1024"):
        sweep(_scenario("gpt2", "decode"), "kv_cache_bytes", context="512..2k:x2")  # GPT-2 has 1024 learned positions
    with pytest.raises(PerfmodelError, match="unknown quantity"):
        sweep(sc, "speed_of_light")


def test_cli_sweep_json_and_needs_gpu(tmp_path):
    """Through the command line: JSON records, and one error line without --gpu."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "perfmodel", "sweep", "--model", "llama-3-8b", *a], capture_output=True, text=True, timeout=120)
    ok = run("--metric", "kv-cache", "--batch", "1,2", "--context", "1k..2k:1k", "--format", "json", "--output", str(tmp_path / "s.json"))
    assert ok.returncode == 0, ok.stderr
    records = json.loads((tmp_path / "s.json").read_text())
    assert [(r["batch"], r["context"], r["value"]) for r in records] == [(1, 1024, 1025 * 131072), (1, 2048, 2049 * 131072), (2, 1024, 2 * 1025 * 131072), (2, 2048, 2 * 2049 * 131072)]
    bad = run("--metric", "time_s", "--context", "1k")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: this needs an accelerator: pass --gpu"]


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from perfmodel.cli import main

    for kind in ("lines", "heatmap"):
        path = tmp_path / f"{kind}.png"
        main(["sweep", "--model", "gpt2", "--gpu", "h100", "--batch", "1,8", "--context", "64..512:x2", "--plot", str(path), "--plot-kind", kind, "--format", "csv", "--output", str(tmp_path / "x.csv")])
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
