"""A scenario: a model run one way (phase, dtypes, batch, tokens) on an optional
accelerator. It owns the operator table and binds the step's symbols; every query
(parameters, FLOPs, memory, roofline, balance) starts from one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

from sympy import Expr, Symbol

from perfmodel import symbols as S
from perfmodel.architecture import Architecture
from perfmodel.encdec import check_phase
from perfmodel.errors import PerfmodelError, warn
from perfmodel.evaluate import bindings
from perfmodel.options import Options
from perfmodel.roofline import Efficiency, Roof, op_times
from perfmodel.table import Table, build
from perfmodel.units import dtype_bytes, weight_element_bytes

if TYPE_CHECKING:
    from perfmodel.hardware.accelerator import Accelerator

#: tokens per step when the user gives none
DEFAULT_SEQ = {"prefill": 2048, "decode": 1, "train": 2048}
DEFAULT_CONTEXT = {"prefill": 0, "decode": 2048, "train": 0}
#: source tokens an encoder-decoder's encoder reads when the user gives none
DEFAULT_SOURCE = 512


@dataclass(frozen=True)
class Scenario:
    """``arch`` run as ``options`` with ``batch`` sequences of ``seq`` new tokens after
    ``context`` cached ones (phase defaults when None)."""

    arch: Architecture
    options: Options = field(default_factory=Options)
    batch: int = 1
    seq: int | None = None
    context: int | None = None
    weight_dtype: str = "bf16"
    act_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    #: the dtype matrix products run in when it is not ``act_dtype``: ``fp8`` for FP8 (w8a8)
    #: builds, whose GEMM inputs are quantized in the previous kernel while the activations
    #: between kernels, collectives and norms stay 16 bit (TensorRT-LLM, Transformer Engine)
    gemm_dtype: str | None = None
    #: embedding table and LM head dtype; None: 16-bit under weight-only quantization
    embed_dtype: str | None = None
    #: weights per fp16 scale of int4/int8 weights (GPTQ/AWQ g128); None: no group scales
    weight_group_size: int | None = None
    accelerator: Accelerator | None = None
    #: achievable fractions for the expected time; None keeps only the pure roofline
    efficiency: Efficiency | None = None
    #: source tokens the encoder of an encoder-decoder reads (default ``DEFAULT_SOURCE``)
    source: int | None = None
    #: a parallel layout (``perfmodel.layout.Layout``): the table is then one GPU's, of
    #: pipeline stage ``stage`` (``perfmodel.sharding``), with communication rows
    layout: object = None
    stage: int = 0

    def __post_init__(self):
        check_phase(self.arch, self.options)  # an encoder-only model has no decode phase
        if self.arch.kind == "encoder" and self.context:
            raise PerfmodelError(f"context: {self.arch.name} is an encoder-only model and keeps no cache; leave --context out")
        for name in ("weight_dtype", "act_dtype", "kv_dtype"):
            dtype_bytes(getattr(self, name))  # unknown dtype -> one-line error
        if self.gemm_dtype is not None:
            dtype_bytes(self.gemm_dtype)
        if self.embed_dtype is not None:
            dtype_bytes(self.embed_dtype)
        weight_element_bytes(self.weight_dtype, self.weight_group_size)
        if self.options.training and self.context:
            raise PerfmodelError("context: a training step has no KV cache; leave --context out")
        positions = self.arch.max_position_embeddings
        if positions is not None and self.tokens_seen > positions:
            raise PerfmodelError(
                f"context + seq = {self.tokens_seen} exceeds max_position_embeddings={positions} "
                "(learned positions cannot go further)"
            )
        for name in ("batch", "seq", "context", "source"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "context" else 1)):
                raise PerfmodelError(f"{name}: {v!r} is not a valid count")
        trained = self.arch.trained_context
        if positions is None and trained is not None and self.tokens_seen > trained:
            warn(
                f"{self.arch.name}: context beyond max_position_embeddings={trained:,} (the context it was trained "
                "for); the numbers extrapolate"
            )
        self._check_stacks()

    def _check_stacks(self) -> None:
        """Only encoder-decoders read a source, within their learned positions."""
        kind = self.arch.kind
        if self.source is not None and kind != "encoder-decoder":
            raise PerfmodelError(f"source-len: {self.arch.name} has no encoder-decoder stack to read a source")
        if kind == "encoder-decoder":
            limit, field = self._source_limit()
            if limit is not None and self.source_tokens > limit:
                raise PerfmodelError(f"source-len {self.source_tokens} exceeds {field}={limit}")

    def _source_limit(self) -> tuple[int | None, str]:
        """The encoder's learned positions: its own table (Whisper) or the shared size (BART)."""
        own = self.arch.encoder.source_positions
        if own is not None:
            return own, "max_source_positions"
        return self.arch.max_position_embeddings, "max_position_embeddings"

    @property
    def source_tokens(self) -> int | None:
        """Encoder tokens of an encoder-decoder: ``source``, else ``DEFAULT_SOURCE`` (capped at
        learned positions; Whisper: its whole source table, as it pads audio to 30 s); None
        for other models."""
        if self.arch.kind != "encoder-decoder":
            return None
        if self.source is not None:
            return self.source
        if self.arch.encoder.source_positions is not None:
            return self.arch.encoder.source_positions
        return min(DEFAULT_SOURCE, self._source_limit()[0] or DEFAULT_SOURCE)

    @property
    def phase(self) -> str:
        return self.options.phase

    @property
    def seq_tokens(self) -> int:
        """``seq``, else the phase default (capped at a learned-position model's length)."""
        if self.seq is not None:
            return self.seq
        return min(DEFAULT_SEQ[self.phase], self.arch.max_position_embeddings or DEFAULT_SEQ[self.phase])

    @property
    def context_tokens(self) -> int:
        if self.context is not None:
            return self.context
        room = (self.arch.max_position_embeddings or 10**12) - self.seq_tokens
        return max(0, min(DEFAULT_CONTEXT[self.phase], room))

    @property
    def tokens_seen(self) -> int:
        return self.seq_tokens + self.context_tokens

    def but(self, **changes) -> Scenario:
        """A copy with some fields changed (``options`` fields accepted directly)."""
        option_fields = {k: changes.pop(k) for k in list(changes) if hasattr(self.options, k)}
        if option_fields:
            changes["options"] = replace(self.options, **option_fields)
        return replace(self, **changes)

    @cached_property
    def table(self) -> Table:
        if self.layout is None:
            return build(self.arch, self.options)
        from perfmodel.sharding import shard_cached

        return shard_cached(self.arch, self.options, self.layout, self.stage)

    @cached_property
    def values(self) -> dict[Symbol, Expr]:
        """Every symbol bound: model dimensions, dtypes, and this step's b, s, t."""
        return bindings(
            self.arch,
            weight_dtype=self.weight_dtype,
            act_dtype=self.act_dtype,
            kv_dtype=self.kv_dtype,
            embed_dtype=self.embed_dtype,
            weight_group_size=self.weight_group_size,
            b=self.batch,
            s=self.seq_tokens,
            t=self.context_tokens,
            s_enc=self.source_tokens,
        )

    @property
    def phase_values(self) -> dict[Symbol, Expr]:
        """The step symbols this phase fixes when printing formulas: ``t = 0`` for a
        prefill or training step, ``s = 1`` for a plain decode step."""
        fixed = {}
        if self.phase in ("prefill", "train") and not self.context:
            fixed[S.t] = self.values[S.t]
        if self.phase == "decode" and self.seq is None:
            fixed[S.s] = self.values[S.s]
        return fixed

    def require_accelerator(self) -> Accelerator:
        if self.accelerator is None:
            raise PerfmodelError("this needs an accelerator: pass --gpu")
        return self.accelerator

    def roof(self, *, expected: bool = False) -> Roof:
        """The accelerator's ceilings in the GEMM dtype (the activation dtype unless
        ``gemm_dtype``); ``expected`` applies the efficiencies."""
        eff = (self.efficiency or Efficiency()) if expected else Efficiency()
        return Roof.of(self.require_accelerator(), self.gemm_dtype or self.act_dtype, eff)

    def op_times(self, *, expected: bool = False):
        return op_times(self.table.ops, self.roof(expected=expected))
