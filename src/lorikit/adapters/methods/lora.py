"""``lora``: standard LoRA — ΔW = s · B A with A (r × in) and B (out × r) both trained.

PEFT's own layers and initialisation (A kaiming-uniform, B = 0); ``attach_adapter`` seeds the
global RNG from the adapter seed first, so the run is reproducible. Hu et al. 2021, "LoRA:
Low-Rank Adaptation of Large Language Models". See docs/methods.md#lora.
"""

from __future__ import annotations

from .base import AdapterMethod


class LoRA(AdapterMethod):
    name = "lora"
    summary = "A and B trained"
    title = "LoRA"
    paper = "Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022"


METHOD = LoRA()
