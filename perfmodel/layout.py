"""The parallel layout: how a model's work is split over GPUs, as one frozen, validated value.

``gpus = tp * pp * cp * dp`` (Megatron-Core's order). Expert parallelism reuses the
data- and context-parallel ranks for the experts, so ``ep`` divides ``dp * cp``
(Megatron-Core ``expert_model_parallel_size``; DeepSpeed-MoE the same). Every error is one
line naming the field (``tp=3 does not divide num_attention_heads=32``); checks that need the
model are in :meth:`Layout.validate`, which also returns notes (KV heads replicated, uneven
pipeline stages).
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
        if (self.dp * self.cp) % self.ep:
            raise LayoutError("ep", f"ep={self.ep} does not divide dp*cp={self.dp * self.cp} "
                                    f"(experts are spread over the data-parallel ranks)")

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
        """Layers of each of the pp*v (virtual) stages, in order: the first num_layers % (pp*v) get one more."""
        stages = self.pp * self.v
        base, extra = divmod(num_layers, stages)
        return tuple(base + (i < extra) for i in range(stages))

    def validate(self, arch: Architecture) -> tuple[str, ...]:
        """Check the layout against the model; raises LayoutError, returns notes that are not errors."""
        notes = []
        layers = arch.num_hidden_layers
        if self.pp > layers:
            raise LayoutError("pp", f"pp={self.pp} exceeds num_hidden_layers={layers}")
        if self.pp * self.v > layers:
            raise LayoutError("v", f"pp*v = {self.pp}*{self.v} = {self.pp * self.v} stages exceed "
                                   f"num_hidden_layers={layers}")
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
