"""The parallel layout: one-line errors naming the field, notes, placement and stages.

Model dimensions come from the shipped presets (the models' own Hugging Face config.json):
Llama-3-8B 32 layers, 32 query / 8 KV heads, FFN 14336; Mixtral-8x7B 8 experts;
DeepSeek-V3 61 layers, MLA with 128 heads, 256 routed experts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfmodel.errors import ConfigError
from perfmodel.hf_config import from_config
from perfmodel.layout import Layout, LayoutError

PRESETS = Path(__file__).resolve().parents[1] / "perfmodel" / "presets"


def _arch(name):
    return from_config(json.loads((PRESETS / f"{name}.json").read_text()), name=name)


LLAMA, MIXTRAL, DSV3 = _arch("llama-3-8b"), _arch("mixtral-8x7b"), _arch("deepseek-v3")


def test_presets_are_the_models_the_messages_quote():
    assert (LLAMA.num_hidden_layers, LLAMA.layers[0].attention.num_attention_heads,
            LLAMA.layers[0].attention.num_key_value_heads) == (32, 32, 8)
    assert MIXTRAL.layers[0].ffn.num_experts == 8 and DSV3.num_hidden_layers == 61


@pytest.mark.parametrize("layout, arch, field, message", [
    (dict(tp=3), LLAMA, "tp", "tp=3 does not divide num_attention_heads=32"),
    (dict(tp=12), LLAMA, "tp", "tp=12 does not divide num_attention_heads=32"),
    (dict(pp=33), LLAMA, "pp", "pp=33 exceeds num_hidden_layers=32"),
    (dict(pp=8, v=5, schedule="interleaved", micro_batches=8), LLAMA, "v",
     "pp*v = 8*5 = 40 stages exceed num_hidden_layers=32"),
    (dict(dp=16, ep=16), MIXTRAL, "ep", "ep=16 exceeds num_experts=8"),
    (dict(dp=3, ep=3), MIXTRAL, "ep", "ep=3 does not divide num_experts=8"),
    (dict(dp=2, ep=2), LLAMA, "ep", "ep=2 needs a mixture-of-experts model (no layer has experts)"),
])
def test_layouts_the_model_refuses(layout, arch, field, message):
    with pytest.raises(LayoutError) as err:
        Layout(**layout).validate(arch)
    assert err.value.field == field and str(err.value) == message and "\n" not in message
    assert isinstance(err.value, ConfigError)  # the CLI prints it as one "error:" line


@pytest.mark.parametrize("layout, field, message", [
    (dict(tp=2, pp=2, dp=2, gpus=12), "gpus", "gpus=12 is not tp*pp*cp*dp = 2*2*1*2 = 8"),
    (dict(tp=0), "tp", "tp=0 is not a positive integer"),
    (dict(dp=8, ep=3), "ep", "ep=3 does not divide dp*cp=8 (experts are spread over the data-parallel ranks)"),
    (dict(dp=16, gpus_per_node=6), "gpus_per_node", "gpus_per_node=6 does not divide gpus=16"),
    (dict(dp=16, nodes=2, gpus_per_node=4), "nodes", "nodes*gpus_per_node = 2*4 = 8 is not gpus=16"),
    (dict(zero=4), "zero", "zero=4 is not a ZeRO stage (0, 1, 2 or 3)"),
    (dict(schedule="gpipe"), "schedule", "schedule='gpipe' is not one of 1f1b, interleaved"),
    (dict(pp=4, v=2), "v", "v=2 virtual stages need schedule=interleaved"),
    (dict(pp=4, v=2, schedule="interleaved", micro_batches=6), "micro_batches",
     "micro_batches=6 is not a multiple of pp=4 (interleaved schedule)"),
])
def test_layouts_that_cannot_exist(layout, field, message):
    with pytest.raises(LayoutError) as err:
        Layout(**layout)
    assert err.value.field == field and str(err.value) == message


def test_kv_heads_fewer_than_tp_are_replicated_and_said_so():
    # Llama-3-8B has 8 KV heads: tp=16 puts each on 2 GPUs (a note, not an error).
    assert Layout(tp=16).validate(LLAMA) == ("num_key_value_heads=8 < tp=16: each KV head is replicated on 2 GPUs",)
    assert Layout(tp=8).validate(LLAMA) == ()


def test_deepseek_v3_on_two_nodes_of_eight():
    # 61 layers over pp=2: stages of 31 and 30 (uneven stages are allowed, and noted).
    layout = Layout(tp=8, pp=2, dp=1, ep=1, nodes=2)
    assert (layout.gpus, layout.gpus_per_node) == (16, 8)
    assert layout.stage_layers(61) == (31, 30)
    assert layout.validate(DSV3) == ("num_hidden_layers=61 over 2 pipeline stages: uneven (31 and 30 layers)",)
    assert Layout(tp=4, dp=4, ep=4, gpus_per_node=8).validate(DSV3) == ()


def test_defaults_and_interleaved_stages():
    assert Layout() == Layout(tp=1, pp=1, dp=1, ep=1, cp=1, gpus=1, nodes=1, gpus_per_node=1)
    layout = Layout(pp=4, v=2, schedule="interleaved", micro_batches=8, dp=2, cp=2, nodes=2)
    assert (layout.gpus, layout.gpus_per_node) == (16, 8)
    assert layout.stage_layers(32) == (4,) * 8


def test_kv_heads_that_cannot_be_replicated_evenly():
    # Llama-3-8B's config with 48 query heads (hand-made): tp=12 divides the 48 query heads but
    # 12 GPUs cannot share 8 KV heads evenly.
    config = json.loads((PRESETS / "llama-3-8b.json").read_text()) | {"num_attention_heads": 48, "head_dim": 128}
    with pytest.raises(LayoutError, match=r"^tp=12 is not a multiple of num_key_value_heads=8 \(KV heads fewer "
                                          r"than tp are replicated\)$"):
        Layout(tp=12).validate(from_config(config, name="llama-48-heads"))
