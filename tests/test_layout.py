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


LLAMA_405B_LAYERS = 126  # meta-llama/Llama-3.1-405B config.json num_hidden_layers


def test_embedding_and_loss_counted_as_layers_as_megatron_core_builds_them():
    """Megatron-Core get_num_layers_to_build with account_for_embedding/loss_in_pipeline_split
    (the Llama-3.1-405B recipe): (126 + 2) / (pp*v) layers per virtual stage, one fewer on
    the first virtual stage of rank 0 and the last of rank pp-1. pp=16, v=8: 128 slots, one
    each; rank 0 runs its 8 virtual stages = 7 decoder layers + the embedding."""
    layout = Layout(pp=16, v=8, schedule="interleaved", micro_batches=16, embedding_in_split=True, loss_in_split=True)
    stages = layout.stage_layers(LLAMA_405B_LAYERS)
    assert len(stages) == 128 and stages[0] == 0 and stages[-1] == 0 and set(stages[1:-1]) == {1}
    per_rank = [sum(stages[r::16]) for r in range(16)]
    assert per_rank == [7] + [8] * 14 + [7]
    # pp=8, v=2 (the recipe's own): 128 / 16 = 8 slots per virtual stage
    recipe = Layout(pp=8, v=2, schedule="interleaved", micro_batches=8, embedding_in_split=True, loss_in_split=True)
    assert recipe.stage_layers(LLAMA_405B_LAYERS) == (7,) + (8,) * 14 + (7,)
    # without them 128 stages do not fit 126 layers
    with pytest.raises(LayoutError, match=r"pp\*v = 16\*8 = 128 stages exceed num_hidden_layers=126$"):
        Layout(pp=16, v=8, schedule="interleaved", micro_batches=16)._check_stages(LLAMA_405B_LAYERS)


def test_first_and_last_stage_layers():
    """num_layers_in_first/last_pipeline_stage: 32 layers, pp=4, first 5, last 3: the
    middle two ranks share 24, 12 each; with v=2 each rank's layers split over its two
    virtual stages (rank 0: 3 + 2)."""
    assert Layout(pp=4, first_stage_layers=5, last_stage_layers=3).stage_layers(32) == (5, 12, 12, 3)
    v2 = Layout(pp=4, v=2, schedule="interleaved", micro_batches=4, first_stage_layers=5, last_stage_layers=3)
    assert v2.stage_layers(32) == (3, 6, 6, 2, 2, 6, 6, 1)
    assert Layout(pp=2, first_stage_layers=15).stage_layers(32) == (15, 17)
    notes = Layout(pp=4, first_stage_layers=5, last_stage_layers=3).validate(LLAMA)
    assert "num_hidden_layers=32 over 4 pipeline stages: uneven (12 and 3 layers)" in notes


@pytest.mark.parametrize("kw, field, message", [
    (dict(pp=4, first_stage_layers=30, last_stage_layers=5), "first_stage_layers",
     "first_stage_layers=30 + last_stage_layers=5 exceeds num_hidden_layers=32"),
    (dict(pp=2, first_stage_layers=10, last_stage_layers=10), "first_stage_layers",
     "first_stage_layers=10 + last_stage_layers=10 is not num_hidden_layers=32 (pp=2)"),
    (dict(pp=4, first_stage_layers=31), "first_stage_layers",
     "first_stage_layers=31 leaves 1 of num_hidden_layers=32 for 3 other stages"),
])
def test_uneven_splits_the_model_refuses(kw, field, message):
    with pytest.raises(LayoutError) as err:
        Layout(**kw).validate(LLAMA)
    assert err.value.field == field and str(err.value) == message


@pytest.mark.parametrize("kw, field, message", [
    (dict(first_stage_layers=4), "first_stage_layers", "first_stage_layers=4 needs pp >= 2, got pp=1"),
    (dict(pp=2, last_stage_layers=-1), "last_stage_layers", "last_stage_layers=-1 is not a non-negative integer"),
    (dict(pp=2, first_stage_layers=4, embedding_in_split=True), "embedding_in_split",
     "embedding_in_split cannot be combined with first_stage_layers/last_stage_layers (Megatron-Core allows one or the other)"),
])
def test_uneven_splits_that_cannot_exist(kw, field, message):
    with pytest.raises(LayoutError) as err:
        Layout(**kw)
    assert err.value.field == field and str(err.value) == message
