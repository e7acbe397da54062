"""perfmodel: analytic performance and memory models of transformer language models.

Every quantity is a sympy expression over named symbols (:mod:`perfmodel.symbols`);
numbers come from evaluating those expressions. Start with :func:`load_model`, then
ask :mod:`perfmodel.api` for DataFrames, or :mod:`perfmodel.quantities` for formulas.
"""

from perfmodel.api import (
    attention_call,
    balance,
    flops,
    formula,
    kv_cache,
    memory_report,
    models,
    params,
    roofline,
    shapes,
)
from perfmodel.architecture import FFN, Architecture, Attention, LatentAttention, Layer, MoE, Norm
from perfmodel.errors import PerfmodelError
from perfmodel.hf_config import from_config
from perfmodel.options import Options
from perfmodel.presets import load_model
from perfmodel.quantities import lookup as quantity
from perfmodel.roofline import Efficiency
from perfmodel.scenario import Scenario

__all__ = [
    "FFN",
    "Architecture",
    "Attention",
    "Efficiency",
    "LatentAttention",
    "Layer",
    "MoE",
    "Norm",
    "Options",
    "PerfmodelError",
    "Scenario",
    "attention_call",
    "balance",
    "flops",
    "formula",
    "from_config",
    "kv_cache",
    "load_model",
    "memory_report",
    "models",
    "params",
    "quantity",
    "roofline",
    "shapes",
]
