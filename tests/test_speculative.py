"""Speculative decoding and generation without a KV cache, against independent values:
the expected tokens per target step by Leviathan et al.'s formula and by enumerating
every accept/reject outcome; the speculative step as draft + verify step times of the
request model; the no-cache FLOPs against a hand sum on the toy model of
test_toy_model; bad input as one ``error:`` line."""

from __future__ import annotations

import itertools
import json

import pytest

from perfmodel.cli import main
from perfmodel.errors import PerfmodelError
from perfmodel.speculative import Acceptance


def brute_force(alpha: float, k: int) -> float:
    """Every outcome of k independent draft tokens (accepted with probability α): the
    target keeps the accepted prefix and adds one token of its own."""
    total = 0.0
    for outcome in itertools.product((True, False), repeat=k):
        p = 1.0
        for accepted in outcome:
            p *= alpha if accepted else 1 - alpha
        prefix = next((i for i, a in enumerate(outcome) if not a), k)
        total += p * (prefix + 1)
    return total


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.6, 0.8, 0.95])
@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_expected_tokens(alpha, k):
    leviathan = (1 - alpha ** (k + 1)) / (1 - alpha)  # Leviathan et al. 2023, eq. (1)
    e = Acceptance(k, alpha).expected_tokens()
    assert e == pytest.approx(leviathan, rel=1e-12)
    assert e == pytest.approx(brute_force(alpha, k), rel=1e-12)


def test_acceptance_distribution():
    # P(j accepted) = α^j (1-α) for j < k, α^k for j = k reproduces the α form
    alpha, k = 0.7, 3
    lengths = tuple([alpha ** j * (1 - alpha) for j in range(k)] + [alpha ** k])
    assert Acceptance(k, lengths=lengths).expected_tokens() == pytest.approx(Acceptance(k, alpha).expected_tokens())
    assert Acceptance(2, lengths=(0.2, 0.3, 0.5)).expected_tokens() == pytest.approx(0.2 + 0.6 + 1.5)


@pytest.fixture(scope="module")
def rows():
    from click.testing import CliRunner

    from perfmodel.cli import cli

    r = CliRunner().invoke(cli, ["speculate", "--model", "llama-3-8b", "--gpu", "h100", "--draft", "llama-3-8b",
                                 "--draft-set", "num_hidden_layers=4", "--k", "4", "--alpha", "0.7", "--context", "128",
                                 "--max-batch", "1024", "--format", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_speculative_step_composes_request_steps(rows):
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.cost import Fusion
    from perfmodel.options import Options
    from perfmodel.presets import load_model
    from perfmodel.request import timers, seconds_of
    from perfmodel.scenario import Scenario

    acc = get_accelerator("h100")
    e = (1 - 0.7 ** 5) / 0.3
    for row in rows[:3]:
        b = row["batch"]
        target = Scenario(load_model("llama-3-8b", {}), Options(phase="decode"), batch=b, accelerator=acc)
        plain = seconds_of(target, timers(target, 128, 2, Fusion(), acc.cost), "calibrated", Fusion(), acc.cost)
        assert row["plain_tpot_s"] == pytest.approx(float(plain("decode", 1, 128)), rel=1e-9)
        assert row["verify_s"] == pytest.approx(float(plain("decode", 5, 128)), rel=1e-9)
        assert row["speedup"] == pytest.approx(e * row["plain_tpot_s"] / (row["draft_s"] + row["verify_s"]), rel=1e-12)


def test_it_pays_while_memory_bound_and_stops_above_a_batch(rows):
    first = rows[0]
    assert first["speedup"] > 1 and first["plain_bound"] == "memory"
    assert all(r["flops_ratio"] > 1 for r in rows)  # more FLOPs per kept token, always
    even = first["break_even_batch"]
    assert even is not None
    assert all((r["speedup"] < 1) == (r["batch"] >= even) for r in rows)


# ----------------------------------------------------------------- no KV cache


def test_no_cache_flops_against_a_hand_sum():
    from test_toy_model import D, DH, FF, H, KV, L, V, toy

    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.nokv import report
    from perfmodel.options import Options
    from perfmodel.scenario import Scenario

    n_prompt, m = 10, 9
    # matmul FLOPs per token per layer: Q, K, V, O projections and the gated FFN
    per_token = L * (2 * D * H * DH + 2 * 2 * D * KV * DH + 2 * H * DH * D + 3 * 2 * D * FF)

    def attention(s, t):  # causal: query i of s sees t + i keys; QKᵀ and PV, 2·DH each
        return L * H * 4 * DH * sum(t + i for i in range(1, s + 1))

    def prefill(n):  # logits only for the last token
        return n * per_token + attention(n, 0) + 2 * D * V

    def decode(t):
        return per_token + attention(1, t) + 2 * D * V

    cached = prefill(n_prompt) + sum(decode(n_prompt + i - 1) for i in range(1, m))
    recomputed = prefill(n_prompt) + sum(prefill(n_prompt + i) for i in range(1, m))
    sc = Scenario(toy(), Options(phase="decode"), accelerator=get_accelerator("h100"))
    frame = report(sc, n_prompt, m, fields=("matmul_flops",))
    last = frame.iloc[-1]
    assert last["output"] == m
    assert last["cached_matmul_flops"] == cached
    assert last["no_cache_matmul_flops"] == recomputed
    assert last["matmul_flops_ratio"] == pytest.approx(recomputed / cached)


def test_no_cache_grows_quadratically():
    from click.testing import CliRunner

    from perfmodel.cli import cli

    r = CliRunner().invoke(cli, ["recompute", "--model", "llama-3-8b", "--gpu", "h100", "--prompt", "128", "--output", "1024", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    ratios = [row["flops_ratio"] for row in rows]
    assert all(a < b for a, b in zip(ratios, ratios[1:]))
    # doubling a long output nearly doubles the ratio (O(n²) over O(n)); time grows less than FLOPs
    assert ratios[-1] / ratios[-2] > 1.7
    assert all(row["time_ratio"] < row["flops_ratio"] for row in rows)
    assert all(row["bytes_ratio"] < row["flops_ratio"] for row in rows)


# ----------------------------------------------------------------- bad input


def run_main(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


SPEC = ("speculate", "--model", "llama-3-8b", "--gpu", "h100")


@pytest.mark.parametrize("extra, text", [
    (("--draft", "none", "--k", "4", "--alpha", "1"), "alpha"),
    (("--draft", "none", "--k", "4", "--alpha", "-0.1"), "alpha"),
    (("--draft", "none", "--k", "0", "--alpha", "0.5"), "k"),
    (("--draft", "none", "--k", "2"), "acceptance"),
    (("--draft", "none", "--k", "2", "--acceptance", "0.5,0.5"), "acceptance"),
    (("--draft", "none", "--k", "2", "--acceptance", "0.5,0.6,0.1"), "sum"),
    (("--draft", "gpt2", "--k", "4", "--alpha", "0.5"), "vocabulary"),
])
def test_speculate_bad_input(capsys, extra, text):
    code, out, err = run_main(capsys, *SPEC, *extra)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and text in err


def test_no_cache_bad_input(capsys):
    code, _, err = run_main(capsys, "recompute", "--model", "llama-3-8b", "--gpu", "h100", "--prompt", "100", "--output", "1")
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1


def test_library_acceptance_errors():
    with pytest.raises(PerfmodelError):
        Acceptance(3, 0.5, (0.25,) * 4)
