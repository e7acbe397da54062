"""Every shipped preset: perfmodel's exact parameter count equals the number of
parameters of the real ``transformers`` model built from the same config.json.

Reference: ``AutoConfig.for_model(model_type, **rest)`` then
``AutoModelForCausalLM.from_config`` on the meta device (no memory is allocated),
``sum(p.numel() for p in model.parameters())`` -- ``parameters()`` yields a tied
embedding/LM-head tensor once. No tolerance: the counts must be equal.
For MoE presets the active count is checked too, against the routed-expert modules
of the same model (see ``conftest.hf_active``).
"""

from __future__ import annotations

from functools import cache

import pytest

from conftest import hf_active, hf_config_dict, hf_meta_model, hf_numel, perfmodel_params, preset_config
from perfmodel.presets import load_model, registry

PRESETS = sorted(registry())
#: decoder-only presets (AutoModelForCausalLM); encoder-decoder and encoder-only ones are
#: held against their own classes in test_encdec.py
CAUSAL = [n for n in PRESETS if load_model(n).kind == "decoder"]


@cache
def _reference(name: str):
    """The meta-device transformers model of a preset (built once per session)."""
    return hf_meta_model(preset_config(name))


def _skip_unless_class_exists(transformers, data: dict) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type, _ = hf_config_dict(data)
    if model_type not in CONFIG_MAPPING:
        pytest.skip(
            f"transformers {transformers.__version__} has no config/model class for model_type {model_type!r}"
        )


@pytest.mark.parametrize("name", CAUSAL)
def test_total_params_equal_transformers(name, transformers_available):
    data = preset_config(name)
    # falcon-7b ships its original file (model_type "RefinedWebModel", n_head/n_layer), which
    # transformers 5.23 rejects; hf_config_dict maps it to FalconConfig the way transformers'
    # convert_custom_code_checkpoint.py does. perfmodel reads the legacy file unchanged.
    _skip_unless_class_exists(transformers_available, data)
    model = _reference(name)
    assert type(model).__name__ == registry()[name]["transformers_class"]
    ours = perfmodel_params(data, name)
    assert ours["total_params"] == hf_numel(model)


@pytest.mark.parametrize("name", [n for n in PRESETS if registry()[n]["family"] in ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3")])
def test_active_params_equal_transformers_experts(name, transformers_available):
    data = preset_config(name)
    model = _reference(name)
    ours = perfmodel_params(data, name)
    assert ours["active_params"] == hf_active(model, model.config)
    assert ours["active_params"] < ours["total_params"]


@pytest.mark.parametrize("name", PRESETS)
def test_dense_presets_are_fully_active(name):
    """A model without routed experts uses every parameter for every token."""
    data = preset_config(name)
    ours = perfmodel_params(data, name)
    is_moe = any(k in data for k in ("num_local_experts", "num_experts", "n_routed_experts"))
    assert (ours["active_params"] == ours["total_params"]) is not is_moe


@pytest.mark.parametrize("name", CAUSAL)
def test_sources_table_agrees_with_transformers(name, transformers_available):
    """sources.json's recorded total (shown by ``perfmodel models``) is the transformers count."""
    assert registry()[name]["total_params"] == hf_numel(_reference(name))
