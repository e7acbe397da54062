"""Bad input through the real command line (``python3 -m perfmodel`` in a subprocess):
each is refused with exactly one stderr line starting ``error:``, exit status 2, no
traceback, nothing on stdout, and a message naming the offending field or option."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, preset_config


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perfmodel", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("configs")
    files = {}
    files["malformed"] = d / "malformed.json"
    files["malformed"].write_text('{"model_type": "llama", "hidden_size": 4096,\n')
    files["unknown_type"] = d / "unknown_type.json"
    files["unknown_type"].write_text(json.dumps({**preset_config("llama-3-8b"), "model_type": "llama9"}))
    no_hidden = preset_config("llama-3-8b")
    del no_hidden["hidden_size"]
    files["no_hidden"] = d / "no_hidden.json"
    files["no_hidden"].write_text(json.dumps(no_hidden))
    files["list"] = d / "list.json"
    files["list"].write_text("[1, 2, 3]")
    files["multimodal"] = d / "multimodal.json"
    files["multimodal"].write_text(json.dumps({"text_config": preset_config("llama-3-8b")}))
    files["missing"] = d / "does_not_exist.json"
    return files


# (case id, argv (with {file} placeholders), strings the one error line must contain)
CASES = [
    ("malformed-json", ["params", "--model", "{malformed}"], ["malformed JSON", "malformed.json"]),
    ("unknown-model-type", ["params", "--model", "{unknown_type}"], ["model_type", "llama9"]),
    ("missing-hidden-size", ["params", "--model", "{no_hidden}"], ["hidden_size"]),
    ("config-not-an-object", ["params", "--model", "{list}"], ["JSON object"]),
    ("multimodal-config", ["params", "--model", "{multimodal}"], ["model_type"]),
    ("nonexistent-file", ["params", "--model", "{missing}"], ["does_not_exist.json"]),
    ("unknown-preset", ["params", "--model", "llama-3-8bb"], ["unknown model", "llama-3-8bb", "did you mean", "llama-3-8b"]),
    ("kv-heads-not-dividing", ["params", "--model", "llama-3-8b", "--set", "num_key_value_heads=6"], ["num_key_value_heads", "6"]),
    ("zero-layers", ["params", "--model", "llama-3-8b", "--set", "num_hidden_layers=0"], ["num_hidden_layers"]),
    ("negative-hidden", ["params", "--model", "llama-3-8b", "--set", "hidden_size=-4"], ["hidden_size", "-4"]),
    ("fractional-size", ["params", "--model", "llama-3-8b", "--set", "intermediate_size=1.5"], ["intermediate_size"]),
    ("string-size", ["params", "--model", "llama-3-8b", "--set", "vocab_size=big"], ["vocab_size"]),
    ("bool-field", ["params", "--model", "llama-3-8b", "--set", "tie_word_embeddings=maybe"], ["tie_word_embeddings"]),
    ("zero-head-dim", ["kv-cache", "--model", "qwen3-8b", "--context", "1k", "--set", "head_dim=0"], ["head_dim"]),
    ("zero-window", ["kv-cache", "--model", "mistral-7b", "--context", "1k", "--set", "sliding_window=0"], ["sliding_window"]),
    ("layer-types-length", ["params", "--model", "gemma-2-9b", "--set", 'layer_types=["full_attention"]'], ["layer_types"]),
    ("top-k-above-experts", ["params", "--model", "mixtral-8x7b", "--set", "num_experts_per_tok=9"], ["num_experts_per_tok", "9", "8"]),
    ("top-k-above-experts-deepseek", ["params", "--model", "deepseek-v3", "--set", "num_experts_per_tok=300"], ["num_experts_per_tok"]),
    ("unknown-activation", ["params", "--model", "llama-3-8b", "--set", "hidden_act=swiglu9"], ["hidden_act", "swiglu9"]),
    ("unknown-kv-dtype", ["kv-cache", "--model", "llama-3-8b", "--context", "4k", "--kv-dtype", "fp7"], ["--kv-dtype", "fp7"]),
    ("context-bad-suffix", ["kv-cache", "--model", "llama-3-8b", "--context", "12q"], ["--context", "12q"]),
    ("context-negative", ["kv-cache", "--model", "llama-3-8b", "--context", "-5"], ["--context", "-5"]),
    ("batch-zero", ["kv-cache", "--model", "llama-3-8b", "--context", "1k", "--batch", "0"], ["--batch"]),
    ("set-without-equals", ["params", "--model", "llama-3-8b", "--set", "hidden_size"], ["--set", "hidden_size"]),
    ("unknown-quantity", ["formula", "flopz", "--model", "llama-3-8b"], ["flopz"]),
    # refused before any run is scored (scoring every run takes minutes)
    ("training-unknown-study", ["validate", "training", "--published", "--study", "nosuch"], ["--study", "nosuch", "MLCommons MLPerf"]),
    ("training-unknown-by", ["validate", "training", "--published", "--by", "bogus"], ["--by", "bogus"]),
]


@pytest.fixture(scope="module")
def results(bad_files):
    """Every case run once, a few subprocesses at a time."""
    paths = {k: str(v) for k, v in bad_files.items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(run, *[a.format(**paths) for a in argv]) for case, argv, _ in CASES}
    return {case: f.result() for case, f in futures.items()}


@pytest.mark.parametrize("case, must_contain", [pytest.param(i, m, id=i) for i, _, m in CASES])
def test_bad_input_is_one_error_line(case, must_contain, results):
    result = results[case]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in must_contain:
        assert text in lines[0], (text, lines[0])


def test_good_input_still_works():
    """The same commands with valid values succeed (so the cases above fail for the reason given)."""
    result = run("kv-cache", "--model", "llama-3-8b", "--context", "4k", "--kv-dtype", "fp8", "--set", "num_key_value_heads=4", "--format", "json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["kv_cache_bytes"] == 2 * 4 * 128 * 32 * 4096 * 1  # 2·n_kv·d_h·layers·context·1 byte
