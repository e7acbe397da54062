"""Shipped presets: real Hugging Face ``config.json`` files, each with its source in
``sources.json`` (and ``SOURCES.md``). Nothing is downloaded at run time."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from perfmodel.architecture import Architecture
from perfmodel.errors import UnknownNameError
from perfmodel.hf_config import apply_overrides, from_config, read_config_file

HERE = Path(__file__).parent


@cache
def registry() -> dict[str, dict]:
    """Preset name -> its provenance record (family, Hub repo, where the copy came from)."""
    return json.loads((HERE / "sources.json").read_text())


def preset_path(name: str) -> Path:
    if name not in registry():
        raise UnknownNameError("model", name, registry())
    return HERE / f"{name}.json"


def load_model(spec: str, overrides: dict | None = None) -> Architecture:
    """A preset name, or a path to a ``config.json`` (or a folder holding one), with
    ``--set`` overrides applied before validation."""
    if spec in registry():
        data, name, source = read_config_file(preset_path(spec)), spec, registry()[spec]["hf_repo"]
    elif Path(spec).exists() or "/" in spec or spec.endswith(".json"):
        data, name, source = read_config_file(spec), Path(spec).stem if Path(spec).suffix else Path(spec).name, spec
    else:
        raise UnknownNameError("model", spec, registry())
    if overrides:
        data = apply_overrides(data, overrides)
        name = name + "".join(f" {k}={v}" for k, v in overrides.items())
    return from_config(data, name=name, source=source)
