"""Shared helpers for the tests that hold perfmodel against the real ``transformers``
model classes. torch and transformers are imported inside the helpers, so test files
that do not use them (and the subprocesses they start) never load them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "perfmodel" / "presets"


def preset_config(name: str) -> dict:
    """The shipped ``config.json`` of a preset, parsed."""
    return json.loads((PRESETS / f"{name}.json").read_text())


def hf_config_dict(data: dict) -> tuple[str, dict]:
    """(model_type, the other keys) as ``transformers`` 5.23 accepts them.

    Legacy Falcon files (model_type ``RefinedWeb``/``RefinedWebModel``, keys ``n_head``,
    ``n_layer``, ``n_head_kv``) are rewritten exactly as transformers' own converter,
    ``models/falcon/convert_custom_code_checkpoint.py``, does: ``n_head`` ->
    ``num_attention_heads``, ``n_layer`` -> ``num_hidden_layers``, ``n_head_kv`` ->
    ``num_kv_heads`` with ``new_decoder_architecture`` true, else false; model_type
    ``falcon``; ``auto_map`` dropped. This is done here in the test only: the library
    reads the legacy file as it is.
    """
    rest = dict(data)
    model_type = rest.pop("model_type")
    if model_type in ("RefinedWeb", "RefinedWebModel"):
        model_type = "falcon"
        rest.pop("auto_map", None)
        if "n_head" in rest:
            rest["num_attention_heads"] = rest.pop("n_head")
        if "n_layer" in rest:
            rest["num_hidden_layers"] = rest.pop("n_layer")
        if "n_head_kv" in rest:
            rest["num_kv_heads"] = rest.pop("n_head_kv")
            rest["new_decoder_architecture"] = True
        else:
            rest["new_decoder_architecture"] = False
    return model_type, rest


def _quiet_transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def hf_config(data: dict):
    """``AutoConfig.for_model(model_type, **rest)`` for a config dict."""
    transformers = _quiet_transformers()
    model_type, rest = hf_config_dict(data)
    return transformers.AutoConfig.for_model(model_type, **rest)


def hf_meta_model(data: dict):
    """The real ``AutoModelForCausalLM`` for ``data``, built on the meta device (no memory)."""
    import torch

    transformers = _quiet_transformers()
    cfg = hf_config(data)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(cfg)


def hf_numel(model) -> int:
    """Parameters of a torch model; ``parameters()`` yields a tied tensor once."""
    return sum(p.numel() for p in model.parameters())


def hf_active(model, cfg) -> int:
    """Parameters one token uses, read off the module tree: every parameter, less the
    routed experts a token does not run. Routed experts are the ``*Experts`` modules
    (stacked ``[E, ...]`` weights); a token runs ``num_experts_per_tok`` of their ``E``."""
    from fractions import Fraction

    k = getattr(cfg, "num_experts_per_tok", None)
    idle = Fraction(0)
    for module in model.modules():
        if type(module).__name__.endswith("Experts"):
            n_experts = module.num_experts
            routed = sum(p.numel() for p in module.parameters())
            idle += Fraction(routed) * (n_experts - k) / n_experts
    active = hf_numel(model) - idle
    assert active.denominator == 1
    return int(active)


def perfmodel_params(data: dict, name: str = "test") -> dict:
    """perfmodel's parameter counts (the ``perfmodel params`` row) for a config dict."""
    from perfmodel import api
    from perfmodel.hf_config import from_config

    return api.params(from_config(data, name=name)).iloc[0].to_dict()


@pytest.fixture(scope="session")
def transformers_available():
    """Skip a test (saying why) when torch or transformers is not installed."""
    pytest.importorskip("torch", reason="torch is not installed: cannot build the reference transformers model")
    return pytest.importorskip("transformers", reason="transformers is not installed: no reference model class")


def fake_hf_model(data: dict):
    """The real ``transformers`` model of a config dict, built on fake tensors (nothing
    allocated) with eager attention and the shape-static ``batched_mm`` experts that
    FlopCounterMode can see; returns (model, the FakeTensorMode that owns it)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    transformers = _quiet_transformers()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = transformers.AutoModelForCausalLM.from_config(
            hf_config(data), attn_implementation="eager", experts_implementation="batched_mm"
        )
    return model, mode


def counted_with_result(fn):
    """(FLOPs FlopCounterMode counts while ``fn`` runs, what ``fn`` returned)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        result = fn()
    return counter.get_total_flops(), result


def token_ids(batch: int, seq: int):
    import torch

    return torch.zeros(batch, seq, dtype=torch.long)


def our_matmul_flops(arch, options, *, batch: int, seq: int, context: int = 0, passes=("fwd",)) -> int:
    """perfmodel's matmul FLOPs over the ops of ``passes``, for ``batch`` × ``seq`` new
    tokens against ``context`` cached ones."""
    from perfmodel import metrics
    from perfmodel.evaluate import bindings, value
    from perfmodel.table import build

    ops = [op for op in build(arch, options).ops if op.pass_ in passes]
    return value(metrics.totals(ops, ("matmul_flops",))["matmul_flops"], bindings(arch, b=batch, s=seq, t=context))
