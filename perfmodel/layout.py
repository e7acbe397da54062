"""The parallel layout: how a model's work is split over GPUs, as one frozen, validated value.

``gpus = tp * pp * cp * dp`` (Megatron-Core's order). Expert parallelism reuses the
data- and context-parallel ranks for the experts, so ``ep`` divides ``dp * cp``
(Megatron-Core ``expert_model_parallel_size``; DeepSpeed-MoE the same). Every error is one
line naming the field (``tp=3 does not divide num_attention_heads=32``); checks that need the
model are in :meth:`Layout.validate`, which also returns notes (KV heads replicated, uneven
pipeline stages).

Uneven pipeline stages as Megatron-Core builds them (``get_num_layers_to_build``):
``first_stage_layers`` / ``last_stage_layers`` (``num_layers_in_first_pipeline_stage`` /
``..._last_...``) fix the first and last ranks' layers and spread the rest over the
others; ``embedding_in_split`` / ``loss_in_split`` (``account_for_embedding_in_pipeline_split``
/ ``account_for_loss_in_pipeline_split``) count the embedding and the LM head with its
loss as one layer each, so the first and the last virtual stage hold one decoder layer
fewer (Llama-3.1-405B: 126 + 2 = 128 slots over pp·v = 16·8 stages).
"""

from __future__ import annotations

from dataclasses import dataclass

from perfmodel.architecture import Architecture, Attention, LatentAttention, MoE
from perfmodel.errors import ConfigError, PerfmodelError

SCHEDULES = ("1f1b", "interleaved")


class LayoutError(ConfigError):
    """A layout that cannot run; ``field`` is the layout field to change, the message says why."""

    def __init__(self, field: str, message: str):
        self.field = field
        PerfmodelError.__init__(self, message)


def _count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LayoutError(name, f"{name}={value!r} is not a positive integer")


@dataclass(frozen=True)
class Layout:
    """Tensor, pipeline, data, expert and context parallel sizes, ZeRO stage, schedule, micro-batches."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    cp: int = 1
    #: total GPUs; None: the product tp*pp*cp*dp
    gpus: int | None = None
    #: None: one node holds all GPUs (or gpus / gpus_per_node nodes)
    nodes: int | None = None
    gpus_per_node: int | None = None
    #: ZeRO stage: 0 none, 1 optimizer states, 2 + gradients, 3 + weights (FSDP full shard)
    zero: int = 0
    #: Megatron sequence parallelism: norms and dropout split over the tp ranks along the sequence
    sequence_parallel: bool = False
    schedule: str = "1f1b"
    #: virtual pipeline stages per GPU (interleaved schedule); 1 for 1F1B
    v: int = 1
    micro_batch: int = 1
    micro_batches: int = 1
    #: decoder layers of the first / last pipeline rank (all its virtual stages); None: an even split
    first_stage_layers: int | None = None
    last_stage_layers: int | None = None
    #: the embedding / the LM head and loss count as one layer of the pipeline split
    embedding_in_split: bool = False
    loss_in_split: bool = False

    def __post_init__(self):
        for name in ("tp", "pp", "dp", "ep", "cp", "v", "micro_batch", "micro_batches"):
            _count(name, getattr(self, name))
        product = self.tp * self.pp * self.cp * self.dp
        if self.gpus is None:
            object.__setattr__(self, "gpus", product)
        _count("gpus", self.gpus)
        if self.gpus != product:
            raise LayoutError("gpus", f"gpus={self.gpus} is not tp*pp*cp*dp = {self.tp}*{self.pp}*{self.cp}*{self.dp}"
                                      f" = {product}")
        self._place()
        if isinstance(self.zero, bool) or self.zero not in (0, 1, 2, 3):
            raise LayoutError("zero", f"zero={self.zero!r} is not a ZeRO stage (0, 1, 2 or 3)")
        if not isinstance(self.sequence_parallel, bool):
            raise LayoutError("sequence_parallel", f"sequence_parallel={self.sequence_parallel!r} is not true/false")
        if self.schedule not in SCHEDULES:
            raise LayoutError("schedule", f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.schedule == "1f1b" and self.v != 1:
            raise LayoutError("v", f"v={self.v} virtual stages need schedule=interleaved")
        if self.schedule == "interleaved":
            if self.pp < 2:
                raise LayoutError("schedule", f"schedule=interleaved needs pp >= 2, got pp={self.pp}")
            if self.micro_batches % self.pp:
                raise LayoutError("micro_batches", f"micro_batches={self.micro_batches} is not a multiple of "
                                                   f"pp={self.pp} (interleaved schedule)")
        self._check_split()
        if (self.dp * self.cp) % self.ep:
            raise LayoutError("ep", f"ep={self.ep} does not divide dp*cp={self.dp * self.cp} "
                                    f"(experts are spread over the data-parallel ranks)")

    def _check_split(self) -> None:
        for name in ("first_stage_layers", "last_stage_layers"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LayoutError(name, f"{name}={value!r} is not a non-negative integer")
            if self.pp < 2:
                raise LayoutError(name, f"{name}={value} needs pp >= 2, got pp={self.pp}")
        for name in ("embedding_in_split", "loss_in_split"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise LayoutError(name, f"{name}={value!r} is not true/false")
            if value and (self.first_stage_layers is not None or self.last_stage_layers is not None):
                raise LayoutError(name, f"{name} cannot be combined with first_stage_layers/last_stage_layers "
                                        f"(Megatron-Core allows one or the other)")

    def _place(self) -> None:
        nodes, per = self.nodes, self.gpus_per_node
        for name, value in (("nodes", nodes), ("gpus_per_node", per)):
            if value is not None:
                _count(name, value)
        if nodes is None and per is None:
            nodes, per = 1, self.gpus
        elif per is None:
            if self.gpus % nodes:
                raise LayoutError("nodes", f"nodes={nodes} does not divide gpus={self.gpus}")
            per = self.gpus // nodes
        elif nodes is None:
            if self.gpus % per:
                raise LayoutError("gpus_per_node", f"gpus_per_node={per} does not divide gpus={self.gpus}")
            nodes = self.gpus // per
        if nodes * per != self.gpus:
            raise LayoutError("nodes", f"nodes*gpus_per_node = {nodes}*{per} = {nodes * per} is not gpus={self.gpus}")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "gpus_per_node", per)

    def stage_layers(self, num_layers: int) -> tuple[int, ...]:
        """Decoder layers of each of the pp*v (virtual) stages, in model order (virtual stage
        ``i`` runs on rank ``i % pp``). Even split: the first ``num_layers % (pp*v)`` get one
        more. ``first/last_stage_layers``: those ranks' layers, the rest spread over the
        other ranks, each rank's over its ``v`` stages. ``embedding/loss_in_split``: the
        split of ``num_layers + 1 (+ 1)`` slots, one fewer layer on the first (last) stage."""
        stages = self.pp * self.v
        if self.first_stage_layers is None and self.last_stage_layers is None:
            sizes = list(_spread(num_layers + self.embedding_in_split + self.loss_in_split, stages))
            sizes[0] -= self.embedding_in_split
            sizes[-1] -= self.loss_in_split
            return tuple(sizes)
        ends = [self.first_stage_layers, self.last_stage_layers]
        middle = _spread(num_layers - sum(n or 0 for n in ends), self.pp - sum(n is not None for n in ends))
        ranks = ([ends[0]] if ends[0] is not None else []) + list(middle) + ([ends[1]] if ends[1] is not None else [])
        chunks = [_spread(n, self.v) for n in ranks]
        return tuple(chunks[i % self.pp][i // self.pp] for i in range(stages))

    def _check_stages(self, layers: int) -> None:
        """pp*v stages (and the fixed first/last ranks) against the model's layers."""
        slots = layers + self.embedding_in_split + self.loss_in_split
        if self.pp * self.v > slots:
            what = f"num_hidden_layers={layers}" + (f" + {slots - layers} (embedding/loss in the split)"
                                                    if slots > layers else "")
            raise LayoutError("v", f"pp*v = {self.pp}*{self.v} = {self.pp * self.v} stages exceed {what}")
        ends = {k: getattr(self, k) for k in ("first_stage_layers", "last_stage_layers") if getattr(self, k) is not None}
        if not ends:
            return
        rest, ranks = layers - sum(ends.values()), self.pp - len(ends)
        fixed = " + ".join(f"{k}={n}" for k, n in ends.items())
        if rest < 0:
            raise LayoutError(next(iter(ends)), f"{fixed} exceeds num_hidden_layers={layers}")
        if ranks == 0 and rest:
            raise LayoutError(next(iter(ends)), f"{fixed} is not num_hidden_layers={layers} (pp={self.pp})")
        if ranks and rest < ranks * self.v:
            raise LayoutError(next(iter(ends)), f"{fixed} leaves {rest} of num_hidden_layers={layers} for "
                                                f"{ranks * self.v} other stages")

    def validate(self, arch: Architecture) -> tuple[str, ...]:
        """Check the layout against the model; raises LayoutError, returns notes that are not errors."""
        notes = []
        layers = arch.num_hidden_layers
        if self.pp > layers + self.embedding_in_split + self.loss_in_split:
            raise LayoutError("pp", f"pp={self.pp} exceeds num_hidden_layers={layers}")
        self._check_stages(layers)
        stages = self.stage_layers(layers)
        if len(set(stages)) > 1:
            notes.append(f"num_hidden_layers={layers} over {len(stages)} pipeline stages: uneven "
                         f"({max(stages)} and {min(stages)} layers)")
        attentions = {layer.attention for layer in arch.layers if layer.attention is not None}
        for att in attentions:
            heads = att.num_attention_heads
            if heads % self.tp:
                raise LayoutError("tp", f"tp={self.tp} does not divide num_attention_heads={heads}")
            if isinstance(att, Attention):
                kv = att.num_key_value_heads
                if kv >= self.tp and kv % self.tp:
                    raise LayoutError("tp", f"tp={self.tp} does not divide num_key_value_heads={kv}")
                if kv < self.tp:
                    if self.tp % kv:
                        raise LayoutError("tp", f"tp={self.tp} is not a multiple of num_key_value_heads={kv} "
                                                f"(KV heads fewer than tp are replicated)")
                    notes.append(f"num_key_value_heads={kv} < tp={self.tp}: each KV head is replicated on "
                                 f"{self.tp // kv} GPUs")
            elif not isinstance(att, LatentAttention):
                raise PerfmodelError(f"layout: unknown attention {type(att).__name__}")
        ffns = {layer.ffn for layer in arch.layers}
        for ffn in ffns:
            if isinstance(ffn, MoE):
                if self.ep > ffn.num_experts:
                    raise LayoutError("ep", f"ep={self.ep} exceeds num_experts={ffn.num_experts}")
                if ffn.num_experts % self.ep:
                    raise LayoutError("ep", f"ep={self.ep} does not divide num_experts={ffn.num_experts}")
            elif ffn.intermediate_size % self.tp:
                raise LayoutError("tp", f"tp={self.tp} does not divide intermediate_size={ffn.intermediate_size}")
        if self.ep > 1 and not any(isinstance(f, MoE) for f in ffns):
            raise LayoutError("ep", f"ep={self.ep} needs a mixture-of-experts model (no layer has experts)")
        return tuple(dict.fromkeys(notes))


def _spread(total: int, parts: int) -> tuple[int, ...]:
    """``total`` split over ``parts``, the first ``total % parts`` one more."""
    base, extra = divmod(total, parts)
    return tuple(base + (i < extra) for i in range(parts))
