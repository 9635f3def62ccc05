"""``lori-s``: LoRI with sparse B — LoRI-D's frozen A, only a fixed mask's entries of B train.

ΔW = s · (M ⊙ B) A with the mask M extracted from a trained LoRI-D adapter (``lorikit masks``,
docs/methods.md#masks) and that adapter's A reused exactly (the reference re-draws A, so its mask
no longer matches the projection it was extracted for). Trainable state is the k kept entries
only (``plans.SparsePlan``). Counting follows the mask extraction's rounding:
k = int((1 − sparsity) · Σ r · out) for a global mask, Σ int((1 − sparsity) · r · out_m) per
module. See docs/methods.md#lori-s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..seeded import freeze_seeded_a
from ..sparsity import kept_count
from .base import LORI_PAPER, AdapterMethod

if TYPE_CHECKING:
    import torch


class LoRIS(AdapterMethod):
    name = "lori-s"
    summary = "LoRI-D's A, only masked entries of B trained; needs --mask"
    title = "LoRI-S"
    paper = LORI_PAPER
    freezes_a = True
    seeded_a = True
    uses_mask = True
    continues = True

    def prepare(self, peft_model, adapter_cfg) -> None:
        freeze_seeded_a(peft_model, adapter_cfg.run_seed.used, adapter_cfg.a_init)

    def plan(self, peft_model, masks: dict[str, torch.Tensor] | None = None, info: dict | None = None):
        if masks is None:
            raise ValueError("lori-s trains the entries of a mask: pass masks")
        from .plans import SparsePlan  # torch: loaded when training, not when the registry is listed

        return SparsePlan(peft_model, masks, info=info)

    def trainable_count(self, a_sizes: list[int], b_sizes: list[int], sparsity: float, scope: str) -> int:
        if scope == "global":
            return kept_count(sparsity, sum(b_sizes))
        return sum(kept_count(sparsity, b) for b in b_sizes)


METHOD = LoRIS()
