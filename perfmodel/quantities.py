"""The named quantities a user can print as a formula, sweep or plot.

One registry: each quantity is a function of a :class:`Scenario` returning its sympy
expression (over ``b``, ``s``, ``t`` and the model's symbols). The same expression
is evaluated exactly by ``formula`` and vectorised by ``sweep``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sympy import Expr

from perfmodel import metrics
from perfmodel import symbols as S
from perfmodel.errors import UnknownNameError
from perfmodel.memory import memory
from perfmodel.ops.base import tokens
from perfmodel.roofline import step_time
from perfmodel.scenario import Scenario


@dataclass(frozen=True)
class Quantity:
    name: str
    unit: str
    description: str
    build: Callable[[Scenario], Expr]
    needs_gpu: bool = False


REGISTRY: dict[str, Quantity] = {}
ALIASES: dict[str, str] = {}


def quantity(name: str, unit: str, description: str, *, aliases=(), needs_gpu=False):
    """Register a quantity builder under ``name`` (a JSON column name) and its aliases."""

    def register(fn: Callable[[Scenario], Expr]):
        if name in REGISTRY:
            raise ValueError(f"quantity {name!r} registered twice")
        REGISTRY[name] = Quantity(name, unit, description, fn, needs_gpu)
        for alias in aliases:
            ALIASES[alias] = name
        return fn

    return register


def lookup(name: str) -> Quantity:
    key = name.replace("-", "_")
    key = ALIASES.get(name, ALIASES.get(key, key))
    if key not in REGISTRY:
        raise UnknownNameError("quantity", name, list(REGISTRY) + list(ALIASES))
    return REGISTRY[key]


for _column, _alias, _text in (
    ("total_params", "params", "all parameters (tied weights once)"),
    ("active_params", "active-params", "parameters used per token (k of E routed experts)"),
    ("embedding_params", "embedding-params", "token and position tables and an untied LM head"),
    ("non_embedding_params", "non-embedding-params", "parameters outside the embeddings"),
):
    quantity(_column, "parameters", _text, aliases=(_alias,))(
        lambda sc, _c=_column: metrics.params(sc.table)[_c]
    )


@quantity("kv_cache_bytes", "bytes", "KV cache of b sequences after the step: t cached + s new tokens each", aliases=("kv-cache", "kv"))
def _kv(sc: Scenario) -> Expr:
    # the one definition: `kv-cache`, `memory`, `formula` and `sweep` all hold t + s tokens;
    # on a layout, one GPU's share (the shard's KV heads, layers and tokens)
    return metrics.kv_cache_bytes(sc.arch, sc.options, S.t + S.s).xreplace(dict(_per_gpu(sc)))


@quantity("kv_cache_bytes_per_token", "bytes", "KV cache one token adds across the layers", aliases=("kv-cache-per-token",))
def _kv_token(sc: Scenario) -> Expr:
    return metrics.kv_cache_bytes_per_token(sc.arch, sc.options).xreplace(dict(_per_gpu(sc)))


def _per_gpu(sc: Scenario) -> tuple:
    """The shard's symbol map on a layout (KV heads, layer counts, tokens); none on one GPU."""
    return sc.table.per_gpu if sc.layout is not None else ()


for _field in metrics.OP_FIELDS:
    quantity(_field, "FLOPs" if "flops" in _field else "bytes", f"{_field.replace('_', ' ')} of the step")(
        lambda sc, _f=_field: metrics.totals(sc.table.ops, (_f,))[_f]
    )


@quantity("arithmetic_intensity", "FLOP/byte", "FLOPs per byte moved over the step", aliases=("intensity",))
def _intensity(sc: Scenario) -> Expr:
    t = metrics.totals(sc.table.ops, ("flops", "bytes"))
    return metrics.intensity(t["flops"], t["bytes"])


for _part in ("weights_bytes", "activation_bytes", "gradient_bytes", "optimizer_bytes", "total_bytes"):
    quantity(_part, "bytes", f"memory: {_part.replace('_bytes', '').replace('_', ' ')}", aliases=(("memory",) if _part == "total_bytes" else ()))(
        lambda sc, _p=_part: memory(sc.table)[_p]
    )


@quantity("time_s", "s", "roofline time of the step (each operator at its own roof)", aliases=("time",), needs_gpu=True)
def _time(sc: Scenario) -> Expr:
    return step_time(sc.op_times())


@quantity("expected_time_s", "s", "step time with the achievable efficiencies applied", needs_gpu=True)
def _expected(sc: Scenario) -> Expr:
    return step_time(sc.op_times(expected=True))


@quantity("tokens_per_s", "tokens/s", "new tokens per second across the batch (roofline)", needs_gpu=True)
def _throughput(sc: Scenario) -> Expr:
    return tokens() / step_time(sc.op_times())


@quantity("calibrated_time_s", "s", "step time from the calibrated cost model (kernels plus the engine's step overhead)",
          aliases=("calibrated-time",), needs_gpu=True)
def _calibrated(sc: Scenario) -> Expr:
    from perfmodel.request import calibrated_step

    return calibrated_step(sc)
