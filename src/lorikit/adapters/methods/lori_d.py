"""``lori-d``: LoRI with dense B — A is a frozen random projection, only B trains.

ΔW = s · B A, A = ``seeded_projection(seed, module, a_init)`` (r × in, never trained: no gradient,
no optimizer state), B (out × r) trained from 0. A is a function of the seed, so a saved adapter's
A can be regenerated and LoRI-S reuses exactly this A. Zhang et al. 2025, "LoRI: Reducing
Cross-Task Interference in Multi-Task Low-Rank Adaptation". See docs/methods.md#lori-d.
"""

from __future__ import annotations

from ..seeded import freeze_seeded_a
from .base import LORI_PAPER, AdapterMethod


class LoRID(AdapterMethod):
    name = "lori-d"
    summary = "A frozen seeded random projection, B trained"
    title = "LoRI-D"
    paper = LORI_PAPER
    freezes_a = True
    seeded_a = True
    continues = True

    def prepare(self, peft_model, adapter_cfg) -> None:
        freeze_seeded_a(peft_model, adapter_cfg.run_seed.used, adapter_cfg.a_init)

    def trainable_count(self, a_sizes: list[int], b_sizes: list[int], sparsity: float, scope: str) -> int:
        return sum(b_sizes)


METHOD = LoRID()
