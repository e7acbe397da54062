"""Shipped presets: real Hugging Face ``config.json`` files, each with its source in
``sources.json`` (and ``SOURCES.md``). Nothing is downloaded at run time."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from perfmodel.architecture import Architecture
from perfmodel.errors import PerfmodelError, UnknownNameError
from perfmodel.hf_config import from_config, read_config_file

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
    if not spec.strip():
        raise PerfmodelError("--model: empty name; give a preset (`perfmodel models`) or a config.json path")
    if spec in registry():
        data, name, source = read_config_file(preset_path(spec)), spec, registry()[spec]["hf_repo"]
    elif "/" in spec or spec.endswith(".json") or _exists(spec):
        data, name, source = read_config_file(spec), Path(spec).stem if Path(spec).suffix else Path(spec).name, spec
    else:
        raise UnknownNameError("model", spec, registry())
    if overrides:  # (an unknown key is refused before the label is used)
        name = name + "".join(f" {k.removeprefix('+')}={v}" for k, v in overrides.items())
    return from_config(data, name=name, source=source, overrides=overrides)


def _exists(spec: str) -> bool:
    try:
        return Path(spec).exists()
    except OSError:  # a name too long for the file system
        return True
