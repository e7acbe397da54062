"""How a step is run: the phase and the implementation choices that change the counts."""

from __future__ import annotations

from dataclasses import dataclass

from perfmodel.errors import PerfmodelError
from perfmodel.ops.optimizer import RECIPES

_CHOICES = {
    "phase": ("prefill", "decode", "train"),
    "attention_impl": ("fused", "naive"),
    "mask": ("causal", "none"),
    "causal_count": ("exact", "half"),
    "mla": ("auto", "absorbed", "naive"),
    "recompute": ("none", "selective", "full"),
}


@dataclass(frozen=True)
class Options:
    """How a step is run: the phase and the implementation choices that change the counts.

    - ``phase``: ``prefill`` (``s`` prompt tokens, empty cache), ``decode`` (``s`` new
      tokens, 1 unless verifying speculated tokens, against ``t`` cached), ``train``.
    - ``attention_impl``: ``fused`` (FlashAttention: scores stay on chip) or ``naive``
      (score and probability matrices written to memory and read back).
    - ``mask``: ``causal`` (each query sees earlier keys) or ``none`` (the full square
      every query x every key, as FlopCounterMode counts an eager attention).
    - ``causal_count``: ``exact`` visible pairs ``s(s+1)/2`` or ``half``, the FlashAttention
      papers' ``s²/2`` (hw-notes §3).
    - ``mla``: ``absorbed`` (cache the latent, fold the up-projections into Q and O: the
      decode form) or ``naive`` (decompress K/V and cache them); ``auto`` = absorbed for
      decode, naive for prefill and training.
    - ``recompute``: activation recomputation in training (Korthikanti et al. 2022).
    - ``optimizer``: the training recipe's bytes per parameter (see ``ops.optimizer``).
    - ``dropout``: training keeps dropout masks (GPT-3 style); off for modern LLMs.
    """

    phase: str = "prefill"
    attention_impl: str = "fused"
    mask: str = "causal"
    causal_count: str = "exact"
    mla: str = "auto"
    recompute: str = "none"
    optimizer: str = "mixed"
    dropout: bool = False
    #: logits for every new token (True), or only the last (False); None = phase default
    all_logits: bool | None = None

    def __post_init__(self):
        if self.optimizer not in RECIPES:
            raise PerfmodelError(f"optimizer: {self.optimizer!r} is not one of {', '.join(RECIPES)}")
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise PerfmodelError(f"{name.replace('_', '-')}: {value!r} is not one of {', '.join(allowed)}")

    @property
    def training(self) -> bool:
        return self.phase == "train"

    @property
    def caching(self) -> bool:
        """Inference writes new K/V into a cache; training keeps them as activations."""
        return not self.training

    @property
    def mla_absorbed(self) -> bool:
        return self.mla == "absorbed" or (self.mla == "auto" and self.phase == "decode")

    @property
    def logits_for_all(self) -> bool:
        return self.all_logits if self.all_logits is not None else self.phase != "prefill"
