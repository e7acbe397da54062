"""Several models side by side on one accelerator: one row per model, every number
taken from the queries behind ``params``, ``kv-cache``, ``memory``, ``roofline`` and
``balance`` (nothing is recomputed here), with ratios against the first model.

A model is named by a spec, ``[LABEL=]MODEL[:KEY=VALUE,KEY=VALUE…]``: a preset or
config path, optional ``--set``-style overrides after a colon, and an optional label
(``MQA=llama-3-8b:num_key_value_heads=1``). A spec without a label is its own label.

(The module is not called ``compare``: a submodule of that name would shadow the
``perfmodel.compare`` function once imported.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from perfmodel import api
from perfmodel.architecture import Architecture
from perfmodel.errors import PerfmodelError
from perfmodel.hf_config import parse_value
from perfmodel.options import Options
from perfmodel.presets import load_model, registry
from perfmodel.scenario import Scenario

if TYPE_CHECKING:
    from perfmodel.hardware.accelerator import Accelerator

#: columns that get a ``<column>_vs_first`` ratio against the first model
RATIO_COLUMNS = (
    "total_params",
    "active_params",
    "kv_cache_bytes_per_token",
    "kv_cache_bytes",
    "total_bytes",
    "prefill_time_s",
    "decode_time_s",
    "decode_tokens_per_s",
    "balance_batch",
    "max_batch",
)

# a comma that starts another KEY=VALUE (values may hold commas: lists)
_NEXT_PAIR = re.compile(r",(?=\s*[A-Za-z_][\w.\-]*\s*=)")
_LABEL = re.compile(r"([^:=/\\]+)=(.+)")


@dataclass(frozen=True)
class Variant:
    """A model to compare: what to load, the overrides to apply, the row's label."""

    label: str
    model: str
    overrides: Mapping[str, object] = field(default_factory=dict)

    def load(self, shared: Mapping[str, object] | None = None) -> Architecture:
        """The architecture, with ``shared`` overrides applied first, then its own."""
        return load_model(self.model, {**(shared or {}), **self.overrides})


def _known(spec: str) -> bool:
    return spec in registry() or Path(spec).exists()


def parse_variant(spec: str) -> Variant:
    """``[LABEL=]MODEL[:KEY=VALUE,…]`` as a :class:`Variant`."""
    spec = spec.strip()
    if not spec:
        raise PerfmodelError("--model: empty model spec")
    label, rest = None, spec
    m = _LABEL.fullmatch(spec)
    if not _known(spec) and m:
        label, rest = m[1].strip(), m[2].strip()
    model, pairs = _split(rest)
    overrides = {}
    if pairs is not None:
        for pair in _NEXT_PAIR.split(pairs):
            key, sep, text = pair.partition("=")
            if not sep or not key.strip():
                raise PerfmodelError(f"--model {spec!r}: expected MODEL:KEY=VALUE[,KEY=VALUE…], got {pair!r}")
            overrides[key.strip()] = parse_value(text.strip())
    return Variant(label or spec, model.strip(), overrides)


def _split(spec: str) -> tuple[str, str | None]:
    """``MODEL`` and the text after its colon (None: no overrides). The model is the
    longest known preset or path before a colon, else the text before the first one."""
    if _known(spec) or ":" not in spec:
        return spec, None
    colons = [i for i, ch in enumerate(spec) if ch == ":"]
    for i in reversed(colons):
        if _known(spec[:i]):
            return spec[:i], spec[i + 1 :]
    return spec[: colons[0]], spec[colons[0] + 1 :]


def compare(
    models: Iterable[str | Variant | Architecture],
    accelerator: Accelerator,
    *,
    context: int = 2048,
    batch: int = 1,
    prompt: int | None = None,
    overrides: Mapping[str, object] | None = None,
    weight_dtype: str = "bf16",
    act_dtype: str = "bf16",
    kv_dtype: str = "bf16",
    source_len: int | None = None,
    layout=None,
) -> pd.DataFrame:
    """One row per model: parameters; KV cache at ``context``; memory of ``batch``
    sequences holding ``context`` tokens, whether it fits and the largest batch that
    does; prefill time of one ``prompt`` (default: the context); decode step time and
    tokens/s at ``batch``; the balance batch; then ``<column>_vs_first`` ratios.

    With a ``layout`` (:class:`~perfmodel.layout.Layout`): the layout's columns and the
    memory of one GPU (:func:`perfmodel.per_gpu.memory_row`: ``weights_bytes_per_gpu``,
    ``kv_cache_bytes_per_gpu``, ``memory_per_gpu_bytes``, ``capacity_per_gpu_bytes``);
    ``fits`` is then per GPU. Times and ``max_batch`` stay one GPU's (``request`` times
    a layout).

    ``models``: specs (``"MQA=llama-3-8b:num_key_value_heads=1"``), Variants or
    Architectures; ``overrides`` apply to every spec before its own.

    Encoder-decoder models read the prompt as their source (``source_len``, default the
    prompt): their prefill time is the encoder over it plus the decoder's first step (one
    start token), and their cache holds the ``context`` target tokens plus the source's
    cross-attention K/V. Other models ignore ``source_len``.
    """
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise PerfmodelError(f"context: {context!r} is not a count of at least 1 token")
    rows, labels = [], set()
    for item in models:
        label, arch = _resolve(item, overrides)
        if label in labels:
            raise PerfmodelError(f"model {label!r} is listed twice; give variants distinct labels (LABEL=MODEL:KEY=VALUE)")
        labels.add(label)
        try:
            dtypes = dict(weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype)
            if arch.kind == "encoder-decoder":
                dtypes["source"] = source_len or prompt or context
            rows.append(_row(label, arch, accelerator, context, batch, prompt, dtypes, layout))
        except PerfmodelError as exc:
            raise PerfmodelError(f"model {label!r}: {exc}") from None
    if not rows:
        raise PerfmodelError("compare: no models given")
    for column in RATIO_COLUMNS:
        for row in rows:
            row[f"{column}_vs_first"] = _ratio(row[column], rows[0][column])
    # a column with a missing value stays object: pandas would turn its ints into floats
    return pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object if any(r[c] is None for r in rows) else None) for c in rows[0]})


def _resolve(item, overrides) -> tuple[str, Architecture]:
    if isinstance(item, Architecture):
        return item.name, item
    variant = item if isinstance(item, Variant) else parse_variant(item)
    try:
        return variant.label, variant.load(overrides)
    except PerfmodelError as exc:
        raise PerfmodelError(f"model {variant.label!r}: {exc}") from None


def _row(label: str, arch: Architecture, acc, context: int, batch: int, prompt: int | None, dtypes: dict,
         layout=None) -> dict:
    """Every figure from the query that owns it: ``params``, ``kv_cache``,
    ``kv_cache`` and ``memory_report`` (as ``perfmodel kv-cache``/``memory --context T --batch B``:
    the KV cache of the context, an MLA model's as the latent cache ``kv-cache``
    counts, and the working set of prefilling it), ``roofline`` of one prompt's
    prefill and of a decode step, and ``balance``."""
    decode = Scenario(arch, Options(phase="decode"), batch=batch, seq=1, context=context, accelerator=acc, **dtypes)
    held = Scenario(arch, Options(phase="prefill", mla="absorbed"), batch=batch, seq=context, context=0, accelerator=acc, **dtypes)
    first = 1 if arch.kind == "encoder-decoder" else prompt or context  # a decoder start token after the encoder
    prefill = Scenario(arch, Options(phase="prefill"), batch=1, seq=first, context=0, accelerator=acc, **dtypes)
    counts = api.params(arch).iloc[0]
    kv = api.kv_cache(held).iloc[0]
    mem = api.memory_report(held).iloc[0]
    first = api.roofline_report(prefill, by="total").iloc[0]
    step = api.roofline_report(decode, by="total").iloc[0]
    bal = api.balance(decode).iloc[0]
    per_gpu = {}
    if layout is not None:
        from perfmodel.per_gpu import layout_labels, memory_row

        per_gpu = {**layout_labels(layout), **memory_row(held, layout)}
    row = {
        "model": label,
        "gpu": acc.name,
        "context": context,
        "batch": batch,
        "total_params": counts["total_params"],
        "active_params": counts["active_params"],
        "kv_cache_bytes_per_token": kv["kv_cache_bytes_per_token"],
        "kv_cache_bytes": kv["kv_cache_bytes"],
        "weights_bytes": mem["weights_bytes"],
        "total_bytes": mem["total_bytes"],
        "fits": mem["fits"],
        "max_batch": mem["max_batch"],
        "prompt": prefill.seq_tokens if prefill.source_tokens is None else prefill.source_tokens,
        "prefill_time_s": first["time_s"],
        "decode_time_s": step["time_s"],
        "decode_tokens_per_s": step["tokens_per_s"],
        "decode_bound": step["bound"],
        "balance_batch": bal["balance_batch"],
        "balance_batch_weights_only": bal["balance_batch_weights_only"],
    }
    row.update(per_gpu)
    return row


def _ratio(x, first):
    """``x / first`` as a float; None where either is missing or ``first`` is 0."""
    if x is None or first is None or first == 0:
        return None
    return float(x) / float(first)
