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
    "mla": ("auto", "absorbed", "expand", "naive"),
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
    - ``mla``: how multi-head latent attention runs and what it caches. ``absorbed``:
      cache the latent and the shared RoPE key, fold ``kv_b_proj`` into the queries and
      the output (DeepSeek's decode form). ``expand``: cache the latent, re-expand every
      key with ``kv_b_proj`` at each step and attend like MHA (transformers 5.x; vLLM's
      prefill). ``naive``: cache the expanded K and V (DeepSeek's reference "naive"
      form). ``auto`` = absorbed for decode, expand for prefill and training: the cache
      always holds the latent.
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
    def mla_form(self) -> str:
        """The MLA form this step runs: ``absorbed``, ``expand`` or ``naive``."""
        if self.mla == "auto":
            return "absorbed" if self.phase == "decode" else "expand"
        return self.mla

    @property
    def logits_for_all(self) -> bool:
        return self.all_logits if self.all_logits is not None else self.phase != "prefill"
