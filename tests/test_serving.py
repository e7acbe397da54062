"""The serving model held to independent values: Little's law and token conservation
on its own output, paged-KV capacity against blocks counted by hand, the steady state
of chunked prefill against periodic schedules worked out by hand on a toy step model,
and bad input refused with one ``error:`` line."""

from __future__ import annotations

import json
import math

import pytest

from perfmodel.cli import main
from perfmodel.errors import PerfmodelError
from perfmodel.serving import Engine, StepModel, Workload, kv_capacity, serve, single_gpu, steady_state


@pytest.fixture(scope="module")
def h100_8b():
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.options import Options
    from perfmodel.presets import load_model
    from perfmodel.scenario import Scenario

    sc = Scenario(load_model("llama-3-8b", {}), Options(phase="decode"), accelerator=get_accelerator("h100-sxm"))
    return single_gpu(sc)


# ----------------------------------------------------------------- conservation laws


@pytest.mark.parametrize("kw", [{"concurrency": 1}, {"concurrency": 48}, {}, {"rate": 4.0}])
@pytest.mark.parametrize("chunk", [2048, None])
def test_littles_law_and_token_conservation(h100_8b, kw, chunk):
    work = Workload.fixed(2048, 256)
    row = serve(h100_8b, work, Engine(chunk_tokens=chunk), **kw)
    # L = λ·W over the whole system (queue included)
    assert row["concurrency"] == pytest.approx(row["requests_per_s"] * row["e2e_latency_s"], rel=1e-9)
    assert row["e2e_latency_s"] == pytest.approx(row["ttft_s"] + 255 * row["tpot_s"], rel=1e-9)
    assert row["output_tokens_per_s"] == pytest.approx(row["requests_per_s"] * 256, rel=1e-12)
    assert row["input_tokens_per_s"] == pytest.approx(row["requests_per_s"] * 2048, rel=1e-12)
    assert row["total_tokens_per_s"] == pytest.approx(row["requests_per_s"] * 2304, rel=1e-12)
    assert row["fits"] == (row["memory_needed_bytes"] <= row["capacity_bytes"])
    if "concurrency" in kw:
        assert row["concurrency"] == pytest.approx(kw["concurrency"], rel=1e-6)
    if "rate" in kw:
        assert row["requests_per_s"] == pytest.approx(kw["rate"], rel=1e-6)
        assert row["queue_wait_s"] > 0
    else:
        assert row["queue_wait_s"] == pytest.approx(0, abs=1e-6)


def test_distribution_workload_conserves_tokens_and_gives_percentiles(h100_8b, tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("prompt,output,count\n512,128,3\n4096,512,1\n")
    work = Workload.read_csv(path)
    row = serve(h100_8b, work, Engine(), concurrency=32)
    mean_in, mean_out = (3 * 512 + 4096) / 4, (3 * 128 + 512) / 4
    assert row["input_tokens_per_s"] == pytest.approx(row["requests_per_s"] * mean_in, rel=1e-12)
    assert row["output_tokens_per_s"] == pytest.approx(row["requests_per_s"] * mean_out, rel=1e-12)
    assert row["concurrency"] == pytest.approx(32, rel=1e-6)
    # three quarters of the requests are the short class: p50 is theirs, p90 the long one's
    assert row["ttft_p50_s"] < row["ttft_s"] < row["ttft_p90_s"]
    assert row["e2e_latency_p50_s"] < row["e2e_latency_p90_s"]


def test_throughput_rises_and_saturates_with_concurrency(h100_8b):
    work, engine = Workload.fixed(1024, 256), Engine()
    x = [serve(h100_8b, work, engine, concurrency=c)["requests_per_s"] for c in (1, 4, 16, 64, 128)]
    assert all(a < b for a, b in zip(x, x[1:]))
    tpot = [serve(h100_8b, work, engine, concurrency=c)["tpot_s"] for c in (1, 64)]
    assert tpot[0] < tpot[1]


# ----------------------------------------------------------------- KV capacity


def toy(step_seconds, memory_bytes=110 * 2**20, fixed=10 * 2**20, token_bytes=1024):
    """A StepModel whose step time is a given function of the step's tokens; 10 MiB of
    weights and activations on a 110 MiB device."""
    return StepModel(seconds=lambda d, t_d, q, p, t_p: step_seconds(d + p),
                     roofline=lambda d, t_d, q, p, t_p: (0.0, step_seconds(d + p) / 2),
                     fixed_bytes=lambda budget: fixed, memory_bytes=memory_bytes, kv_token_bytes=token_bytes,
                     gpus=1, name="toy", gpu="toy-gpu")


def test_paged_blocks_by_hand():
    step = toy(lambda n: 1e-3)
    # the whole device less 10 MiB: 100 MiB / (16 tokens x 1 KiB) = 6400 blocks; a
    # request of 100 + 29 tokens holds ceil(129 / 16) = 9 of them: floor(6400 / 9) = 711
    cap = kv_capacity(step, Workload.fixed(100, 29), Engine(block_size=16, memory_fraction=1.0))
    assert (cap["kv_blocks"], cap["kv_blocks_per_request"], cap["max_concurrency"]) == (6400, 9, 711)
    # half of the prompt cached: floor(50 / 16) = 3 whole blocks (48 tokens) held once;
    # each request then needs ceil((52 + 29) / 16) = 6: floor((6400 - 3) / 6) = 1066
    cap = kv_capacity(step, Workload.fixed(100, 29), Engine(block_size=16, memory_fraction=1.0, prefix_hit_rate=0.5))
    assert (cap["kv_blocks_per_request"], cap["max_concurrency"]) == (6, 1066)
    # on demand: the prompt and half the output, plus half a block: (100 + 14.5)/16 + 0.5
    cap = kv_capacity(step, Workload.fixed(100, 29), Engine(block_size=16, memory_fraction=1.0, kv_policy="on-demand"))
    assert cap["kv_blocks_per_request"] == pytest.approx((100 + 14.5) / 16 + 0.5)
    assert cap["max_concurrency"] == math.floor(6400 / ((100 + 14.5) / 16 + 0.5))
    # max_seqs caps it
    assert kv_capacity(step, Workload.fixed(100, 29), Engine(max_seqs=64))["max_concurrency"] == 64
    # vLLM: 0.9 of the device less the fixed bytes (89 MiB: 5696 blocks); TensorRT-LLM:
    # 0.9 of what the fixed bytes leave (90 MiB: 5760 blocks)
    assert kv_capacity(step, Workload.fixed(100, 29), Engine())["kv_blocks"] == (99 - 10) * 64
    assert kv_capacity(step, Workload.fixed(100, 29), Engine(memory_of="free"))["kv_blocks"] == 90 * 64


def test_kv_bytes_per_token_of_llama3_8b(h100_8b):
    # 2 (K and V) x 32 layers x 8 KV heads x 128 x 2 bytes
    assert h100_8b.kv_token_bytes == 2 * 32 * 8 * 128 * 2
    cap = kv_capacity(h100_8b, Workload.fixed(2048, 256), Engine(block_size=16))
    assert cap["kv_block_bytes"] == 16 * 131072
    assert cap["kv_blocks"] == math.floor(cap["kv_pool_bytes"] / (16 * 131072))
    assert cap["kv_blocks_per_request"] == math.ceil(2304 / 16)


# ----------------------------------------------------------------- chunked prefill, by hand

A, C = 2e-3, 1e-5  # toy step: 2 ms + 10 µs per token


def linear(n):
    return A + C * n


def test_one_prompt_per_step_schedule():
    """P = 100, M = 11, budget 1000, 11 requests: in the periodic schedule every step
    carries one whole prompt (100 tokens) and the 10 decoding sequences: 110 tokens.
    One request finishes per step; TTFT = one step, TPOT = one step, e2e = 11 steps."""
    step_s = linear(110)
    s = steady_state(toy(linear), Workload.fixed(100, 11), Engine(chunk_tokens=1000), 11)
    assert s["d"] == pytest.approx(10, rel=1e-6)
    assert s["x"] == pytest.approx(1 / step_s, rel=1e-6)
    assert s["ttft"][0] == pytest.approx(step_s, rel=1e-6)
    assert s["tpot"] == pytest.approx(step_s, rel=1e-6)
    assert s["e2e"][0] == pytest.approx(11 * step_s, rel=1e-6)


@pytest.mark.parametrize("concurrency, wait_steps", [(4, 0), (6, 6)])
def test_budget_bound_chunked_schedule(concurrency, wait_steps):
    """P = 300, M = 10, budget 103: a step holds 3 decode tokens and a 100-token chunk,
    so a prompt takes 3 steps and one request finishes every 3 steps, decoding 9 steps:
    3 decode, 1 prefilling. With 4 requests nobody waits (TTFT 3 steps); with 6, two
    queue ahead, 3 steps each: TTFT = 3 + 6 steps."""
    step_s = linear(103)
    s = steady_state(toy(linear), Workload.fixed(300, 10), Engine(chunk_tokens=103), concurrency)
    assert s["d"] == pytest.approx(3, rel=1e-6)
    assert s["chunk"] == pytest.approx(100, rel=1e-6)
    assert s["x"] == pytest.approx(1 / (3 * step_s), rel=1e-6)
    assert s["ttft"][0] == pytest.approx((3 + wait_steps) * step_s, rel=1e-6)
    assert s["tpot"] == pytest.approx(step_s, rel=1e-6)


def test_separate_prefill_steps_by_hand():
    """Without chunking, with a constant step time T: a request's prompt is one step of
    its own and the d decoding sequences wait for it. X = 1 / (T + (M-1) T / d) and
    TPOT = T / (1 - X T); d = C - X·TTFT with TTFT = T + T/2."""
    T = 5e-3
    s = steady_state(toy(lambda n: T), Workload.fixed(50, 21), Engine(chunk_tokens=None), 8)
    d = s["d"]
    x = 1 / (T + 20 * T / d)
    assert s["x"] == pytest.approx(x, rel=1e-9)
    assert s["tpot"] == pytest.approx(T / (1 - x * T), rel=1e-9)
    assert d == pytest.approx(8 - x * 1.5 * T, rel=1e-6)


# ----------------------------------------------------------------- bad input


def run_main(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


BASE = ("serve", "--model", "llama-3-8b", "--gpu", "h100", "--prompt", "512", "--output", "64")


@pytest.mark.parametrize("extra, text", [
    (("--rate", "-1"), "rate"),
    (("--rate", "1e9"), "saturated throughput"),
    (("--concurrency", "0"), "concurrency"),
    (("--concurrency", "4", "--rate", "1"), "not both"),
    (("--prefix-hit-rate", "1"), "prefix hit rate"),
    (("--memory-fraction", "0"), "memory fraction"),
    (("--gpu-hour-price", "-2"), "price"),
])
def test_serve_bad_input(capsys, extra, text):
    code, out, err = run_main(capsys, *BASE, *extra)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and text in err


def test_serve_beyond_learned_positions(capsys):
    code, _, err = run_main(capsys, "serve", "--model", "gpt2", "--gpu", "h100", "--prompt", "1000", "--output", "100")
    assert code == 2 and len(err.splitlines()) == 1 and "max_position_embeddings=1024" in err


def test_serve_missing_lengths_and_bad_workload(capsys, tmp_path):
    code, _, err = run_main(capsys, "serve", "--model", "llama-3-8b", "--gpu", "h100", "--prompt", "512")
    assert code == 2 and err.startswith("error: ") and "--output" in err
    bad = tmp_path / "w.csv"
    bad.write_text("input,output\n1,2\n")
    code, _, err = run_main(capsys, "serve", "--model", "llama-3-8b", "--gpu", "h100", "--workload", str(bad))
    assert code == 2 and len(err.splitlines()) == 1 and "prompt" in err


def test_serve_cli_columns(capsys):
    main([*BASE, "--concurrency", "16", "--gpu-hour-price", "2", "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)
    for col in ("ttft_s", "tpot_s", "output_tokens_per_s", "max_concurrency", "fits", "binds",
                "usd_per_million_output_tokens", "j_per_output_token_estimate"):
        assert col in row
    # $/M output tokens = price x decode share of the time / output tokens per hour x 1e6
    share = 1 - row["prefill_time_share"]
    assert row["usd_per_million_output_tokens"] == pytest.approx(2 * share / 3600 / row["output_tokens_per_s"] * 1e6)
    assert row["usd_per_million_tokens"] == pytest.approx(2 / 3600 / row["total_tokens_per_s"] * 1e6)


def test_library_errors():
    with pytest.raises(PerfmodelError):
        Workload.fixed(0, 10)
    with pytest.raises(PerfmodelError):
        Engine(kv_policy="lru")


@pytest.mark.parametrize("model", ["llama-3-8b", "deepseek-v2-lite", "mixtral-8x7b"])
def test_pure_steps_are_the_request_models(model):
    """A decode-only step is the request model's decode step at that batch and
    context; a lone prompt is its prefill step (the serving model adds no time)."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.cost import Fusion
    from perfmodel.options import Options
    from perfmodel.presets import load_model
    from perfmodel.request import seconds_of, timers
    from perfmodel.scenario import Scenario

    acc = get_accelerator("h100")
    sc = Scenario(load_model(model, {}), Options(phase="decode"), batch=16, accelerator=acc)
    step = single_gpu(sc)
    at16 = seconds_of(sc, timers(sc, 1000, 2, Fusion(), acc.cost), "calibrated", Fusion(), acc.cost)
    one = sc.but(batch=1)
    at1 = seconds_of(one, timers(one, 1000, 2, Fusion(), acc.cost), "calibrated", Fusion(), acc.cost)
    assert step.seconds(16, 1000, 0, 0, 0) == pytest.approx(float(at16("decode", 1, 1000)), rel=1e-12)
    assert step.seconds(0, 0, 1, 1000, 0) == pytest.approx(float(at1("prefill", 1000, 0)), rel=1e-12)


def test_max_rate_meets_the_ttft_limit_and_no_more(h100_8b):
    from perfmodel.serving import max_rate

    work, engine = Workload.fixed(2048, 256), Engine()
    row = max_rate(h100_8b, work, engine, ttft_s=0.5)
    assert row["ttft_s"] <= 0.5 and row["ttft_s"] == pytest.approx(0.5, rel=1e-3)
    assert serve(h100_8b, work, engine, rate=row["requests_per_s"] * 1.01)["ttft_s"] > 0.5
    # the M/D/1 wait: ρ·S / (2(1 − ρ)) with S = 1 / X_max
    top = serve(h100_8b, work, engine)["requests_per_s"]
    rho = row["requests_per_s"] / top
    own = serve(h100_8b, work, engine, concurrency=row["running"])["ttft_s"]
    assert row["ttft_s"] - own == pytest.approx(rho / top / (2 * (1 - rho)), rel=1e-6)


def test_price_table_rows_are_sourced_list_prices():
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.hardware.prices import list_price, table

    for _, r in table().iterrows():
        get_accelerator(r["key"])  # a catalog key
        assert r["usd_per_gpu_hour"] > 0
        assert "list price" in r["kind"] and r["source"].startswith("https://")
        assert r["as_of"] and r["retrieved"]
    price, source = list_price("h100-sxm")
    assert price > 0 and "list price" in source
    assert list_price("mi300x") == (None, "")


def test_serve_takes_the_list_price_by_default(capsys):
    from perfmodel.hardware.prices import list_price

    main([*BASE, "--concurrency", "4", "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["gpu_hour_usd"] == list_price("h100-sxm")[0]
    assert row["price_source"].startswith("list price")


def test_curve_and_plot(capsys, tmp_path):
    path = tmp_path / "curve.png"
    main([*BASE, "--curve", "--plot", str(path), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    levels = [r["running"] for r in rows]
    assert levels[0] == 1 and levels[-1] == rows[-1]["max_concurrency"]
    assert rows[-1]["binds"] in ("kv_capacity", "max_seqs")
    x = [r["output_tokens_per_s"] for r in rows]
    assert all(a < b for a, b in zip(x, x[1:]))
