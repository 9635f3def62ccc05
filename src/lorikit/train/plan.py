"""Which tensors a method trains, and how they get back into the PEFT adapter before saving.

``DensePlan`` trains every parameter left with ``requires_grad`` (LoRA: A and B; LoRI-D: B only,
A frozen by ``attach_adapter``). Sparse methods supply their own plan with the same interface.
"""

from __future__ import annotations

import torch


class DensePlan:
    def __init__(self, peft_model):
        self.peft_model = peft_model
        self._params = [p for p in peft_model.parameters() if p.requires_grad]

    def parameters(self) -> list[torch.nn.Parameter]:
        return self._params

    def after_step(self) -> None:
        """Called after every optimizer step (sparse plans restore their invariants here)."""

    def finalize(self) -> None:
        """Write trained values into the PEFT model's own weights (dense plans already did)."""

    def describe(self) -> dict:
        return {"trainable_parameters": sum(p.numel() for p in self._params)}

    def metadata(self) -> dict:
        """Top-level ``lorikit.json`` fields this plan sets (e.g. the parent adapter, the mask)."""
        return {}
