"""perfmodel: analytic performance and memory models of transformer language models.

Every quantity is a sympy expression over named symbols (:mod:`perfmodel.symbols`);
numbers come from evaluating those expressions. Start with :func:`load_model`, then
ask for DataFrames (:func:`params`, :func:`flops`, :func:`roofline_report`, …) or formulas
(:func:`quantity`). Names load on first use, so ``import perfmodel`` stays fast.
"""

from importlib import import_module

_EXPORTS = {
    "attention_call": "perfmodel.api",
    "balance": "perfmodel.api",
    "compare": "perfmodel.comparison",
    "flops": "perfmodel.api",
    "formula": "perfmodel.api",
    "kv_cache": "perfmodel.api",
    "memory_report": "perfmodel.api",
    "models": "perfmodel.api",
    "params": "perfmodel.api",
    "point": "perfmodel.points",
    "fit_columns": "perfmodel.fits",
    "roofline_report": "perfmodel.api",
    "shapes": "perfmodel.api",
    "sweep": "perfmodel.sweeps",
    "FFN": "perfmodel.architecture",
    "Architecture": "perfmodel.architecture",
    "Attention": "perfmodel.architecture",
    "LatentAttention": "perfmodel.architecture",
    "Layer": "perfmodel.architecture",
    "MoE": "perfmodel.architecture",
    "Norm": "perfmodel.architecture",
    "PerfmodelError": "perfmodel.errors",
    "PerfmodelWarning": "perfmodel.errors",
    "from_config": "perfmodel.hf_config",
    "Options": "perfmodel.options",
    "load_model": "perfmodel.presets",
    "Efficiency": "perfmodel.roofline",
    "Scenario": "perfmodel.scenario",
}
__all__ = sorted(_EXPORTS) + ["quantity"]


def __getattr__(name: str):
    if name == "quantity":
        return import_module("perfmodel.quantities").lookup
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
