"""Training memory: bytes per parameter of the optimizer recipes, and activation bytes
against Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models" (arXiv 2205.05198), on the paper's own GPT-style layer and model sizes.

Korthikanti §4 assumes a GPT layer (LayerNorm, MHA, a 4h GeLU MLP, learned positions,
dropout after attention, after the MLP and on the softmax), 16-bit activations and
1-byte dropout masks, and derives per layer (Eq. 1, Table 2)::

    no recomputation   sbh(34 + 5as/h)   (attention 11sbh + 5as²b, MLP 19sbh, norms 4sbh)
    selective          34·sbh            (QKᵀ, softmax, its dropout and PV recomputed)
    full               2·sbh             (only the layer input is kept)

and outside the layers (§4.3, no pipeline parallelism): the embedding dropout mask sbh,
the last LayerNorm's input 2sbh, the output layer's input 2sbh, the fp32 logits 4sbv.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perfmodel.evaluate import bindings, value
from perfmodel.hf_config import from_config
from perfmodel.memory import memory
from perfmodel.options import Options
from perfmodel.table import build

#: Korthikanti's setting: naive attention (probabilities materialised), dropout masks kept
PAPER = dict(phase="train", attention_impl="naive", dropout=True)


def gpt(h: int, a: int, layers: int, vocab: int = 51200, positions: int = 2048):
    """A GPT-2-style model (GPT-3 and MT-NLG share its layer) of hidden size ``h`` and ``a`` heads."""
    return from_config(
        {"model_type": "gpt2", "n_embd": h, "n_head": a, "n_layer": layers, "vocab_size": vocab, "n_positions": positions}
    )


def activation_bytes(arch, b: int, s: int, **options) -> int:
    table = build(arch, Options(**{**PAPER, **options}))
    return value(memory(table)["activation_bytes"], bindings(arch, b=b, s=s, t=0))


def per_layer(h: int, a: int, b: int, s: int, **options) -> int:
    """Activation bytes one more layer adds (everything outside the layers cancels)."""
    return activation_bytes(gpt(h, a, 3), b, s, **options) - activation_bytes(gpt(h, a, 2), b, s, **options)


SHAPES = [  # (h, a, b, s): small ones, and GPT-3's and MT-NLG's layer (Korthikanti §5)
    (64, 4, 2, 16),
    (768, 12, 3, 512),
    (12288, 96, 1, 2048),
    (20480, 128, 1, 2048),
]


@pytest.mark.parametrize(("h", "a", "b", "s"), SHAPES)
def test_activations_per_layer_match_korthikanti_table_2(h, a, b, s):
    """Eq. 1 / Table 2 "no parallelism": sbh(34 + 5as/h) = 34sbh + 5as²b bytes; selective
    recomputation 34sbh; full recomputation 2sbh."""
    sbh = s * b * h
    assert per_layer(h, a, b, s) == 34 * sbh + 5 * a * s * s * b
    assert per_layer(h, a, b, s, recompute="selective") == 34 * sbh
    assert per_layer(h, a, b, s, recompute="full") == 2 * sbh


@pytest.mark.parametrize(("h", "a", "b", "s"), SHAPES[:2])
def test_whole_model_activations(h, a, b, s):
    """The whole model, L layers, vocabulary v: Eq. 5 with t = p = 1 plus §4.3's terms,
    ``sbhL(34 + 5as/h) + sbh + 4sbh(1 + v/h)``. With selective recomputation the layers
    keep 34sbh each. With full recomputation: the L layer inputs (2sbhL), plus while one
    layer is recomputed for its backward its whole working set sbh(34 + 5as/h), plus the
    same terms outside the layers (memory.py keeps those; the paper ignores them there)."""
    layers, v = 4, 1000
    arch = gpt(h, a, layers, vocab=v)
    sbh = s * b * h
    layer = 34 * sbh + 5 * a * s * s * b
    outside = sbh + 4 * sbh + 4 * s * b * v
    assert activation_bytes(arch, b, s) == layers * layer + outside
    assert activation_bytes(arch, b, s, recompute="selective") == layers * 34 * sbh + outside
    assert activation_bytes(arch, b, s, recompute="full") == layers * 2 * sbh + layer + outside


@pytest.mark.parametrize(("h", "a", "saved"), [(12288, 96, 70), (20480, 128, 65)])
def test_selective_recomputation_saving(h, a, saved):
    """Korthikanti §5: "5as/h = 80" (GPT-3) and "= 64" (MT-NLG), so "selective activation
    recomputation [saves] 70% and 65% of the required memory for activations"."""
    s, b = 2048, 1
    none, selective = per_layer(h, a, b, s), per_layer(h, a, b, s, recompute="selective")
    assert round(100 * (none - selective) / none) == saved


def test_pipeline_output_deallocation_saving_530b():
    """Korthikanti App. B: deallocating each microbatch's stage output saves "sbhp = 2.73 GB"
    on the first stage of the 530B model (h = 20480, s = 2048, micro-batch 1, p = 35, 2
    bytes per element; the paper's GB are 2³⁰ bytes). A stage output is one layer-boundary
    tensor, which is what full recomputation keeps per layer: 35 of those."""
    boundary = per_layer(20480, 128, 1, 2048, recompute="full")
    assert round(35 * boundary / 2**30, 2) == 2.73


@pytest.mark.parametrize(
    ("recipe", "weight_dtype", "per_param"),
    [
        # ZeRO (Rajbhandari et al. 2019, §3.1): "2Ψ + 2Ψ + KΨ = 16Ψ bytes", K = 12
        ("mixed", "bf16", 16),
        # Megatron-LM README, distributed optimizer table, non-distributed column:
        # "fp16 param, fp16 grads | 20", "bf16 param, fp32 grads | 18", "fp32 param, fp32 grads | 16"
        ("megatron-fp16", "fp16", 20),
        ("megatron-bf16", "bf16", 18),
        ("fp32", "fp32", 16),
    ],
)
def test_bytes_per_parameter(recipe, weight_dtype, per_param):
    """Weights + gradients + optimizer states per parameter."""
    arch = gpt(64, 4, 2)
    table = build(arch, Options(phase="train", optimizer=recipe))
    parts = memory(table)
    values = bindings(arch, weight_dtype=weight_dtype, b=1, s=16, t=0)
    states = value(parts["weights_bytes"] + parts["gradient_bytes"] + parts["optimizer_bytes"], values)
    assert states == per_param * value(table.params, values)


def test_bytes_per_parameter_through_the_cli():
    """The same through ``perfmodel memory --phase train`` and ``perfmodel params``: the
    Megatron fp16 recipe keeps 20 bytes per parameter."""
    args = ["--model", "gpt2-medium", "--format", "json"]
    run = [sys.executable, "-m", "perfmodel"]
    memory_cmd = [*run, "memory", *args, "--phase", "train", "--optimizer", "megatron-fp16", "--weight-dtype", "fp16"]
    row = json.loads(subprocess.run(memory_cmd, capture_output=True, text=True, check=True).stdout)[0]
    params = json.loads(subprocess.run([*run, "params", *args], capture_output=True, text=True, check=True).stdout)[0]
    states = row["weights_bytes"] + row["gradient_bytes"] + row["optimizer_bytes"]
    assert states == 20 * params["total_params"]


def test_zero_gpt2_example():
    """ZeRO §3.1: "For a model such as GPT-2 with 1.5 Billion parameters, this leads to a
    memory requirement of at least 24 GB, which is significantly higher than the meager
    3 GB of memory required to hold the fp16 parameters alone." GPT-2 XL's config
    (1600 wide, 48 layers, 25 heads; 1.56B parameters)."""
    arch = gpt(1600, 25, 48, vocab=50257, positions=1024)
    parts = memory(build(arch, Options(phase="train")))
    values = bindings(arch, weight_dtype="fp16", act_dtype="fp16", b=1, s=1024, t=0)
    states = value(parts["weights_bytes"] + parts["gradient_bytes"] + parts["optimizer_bytes"], values)
    weights = value(parts["weights_bytes"], values)
    assert 24e9 <= states < 26e9
    assert 3e9 <= weights < 3.2e9
