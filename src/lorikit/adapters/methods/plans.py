"""Training plans: which tensors a method trains, and how they get back into the PEFT adapter.

``DensePlan`` trains every parameter left with ``requires_grad`` (LoRA: A and B; LoRI-D: B only,
A frozen). ``SparsePlan`` trains only the masked-in entries of every B (LoRI-S,
docs/methods.md#lori-s): for each PEFT ``lora_B`` Linear the dense weight B₀ is frozen (no
gradient buffer, no optimizer state) and a flat ``values`` Parameter of size k holds the kept
entries; fixed flat ``indices`` (the True positions of the mask) scatter them into B in every
forward, through ``torch.nn.utils.parametrize``:

    B = scatter(B₀.flatten(), indices, values).view(out, r)

Entries outside the mask are read from B₀ and never written, so they stay bit-identical (exactly
zero for a fresh LoRI-S adapter, the parent's values in continual learning), and gradients and
AdamW moments have k elements instead of out × r. ``finalize()`` writes the dense B back into the
PEFT weight, so the saved adapter is an ordinary PEFT adapter. State lives in ordinary
``nn.Parameter``s (1-D, shardable) and buffers on each lora_B module.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...errors import LorikitError
from ..layers import lora_layers


class DensePlan:
    """Train every parameter that has ``requires_grad``; ``info`` = top-level lorikit.json fields."""

    def __init__(self, peft_model, info: dict | None = None):
        self.peft_model = peft_model
        self.info = dict(info or {})
        self._params = [p for p in peft_model.parameters() if p.requires_grad]

    def parameters(self) -> list[torch.nn.Parameter]:
        return self._params

    def after_step(self) -> None:
        """Called after every optimizer step (a plan restores its invariants here)."""

    def finalize(self) -> None:
        """Write trained values into the PEFT model's own weights (dense plans already did)."""

    def describe(self) -> dict:
        return {"trainable_parameters": sum(p.numel() for p in self._params)}

    def metadata(self) -> dict:
        """Top-level ``lorikit.json`` fields this plan sets (e.g. the parent adapter, the mask)."""
        return dict(self.info)


class ScatterKept(nn.Module):
    """Parametrization of a frozen B₀: positions ``indices`` of the flat B take ``values``."""

    def __init__(self, indices: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.register_buffer("indices", indices)
        self.values = nn.Parameter(values)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        return dense.reshape(-1).scatter(0, self.indices, self.values.to(dense.dtype)).view_as(dense)


def check_masks_cover(layers: dict, masks: dict[str, torch.Tensor]) -> None:
    missing = [n for n in layers if n not in masks]
    if missing:
        raise LorikitError(f"mask: no entry for module {missing[0]}")
    extra = [n for n in masks if n not in layers]
    if extra:
        raise LorikitError(f"mask: module {extra[0]} is not adapted in this model")


class SparsePlan(DensePlan):
    """Train only the masked-in entries of every B (same interface as ``DensePlan``)."""

    def __init__(self, peft_model, masks: dict[str, torch.Tensor], adapter_name: str = "default",
                 info: dict | None = None):
        self.peft_model = peft_model
        self.adapter_name = adapter_name
        self.info = dict(info or {})
        self._modules: list[nn.Linear] = []
        self._params: list[nn.Parameter] = []
        self.kept = 0
        self.total = 0
        layers = dict(lora_layers(peft_model, adapter_name))
        check_masks_cover(layers, masks)
        for p in peft_model.parameters():
            p.requires_grad_(False)
        for name, layer in layers.items():
            lin = layer.lora_B[adapter_name]
            weight = lin.weight
            mask = masks[name]
            if tuple(mask.shape) != tuple(weight.shape):
                raise LorikitError(f"mask: module {name}: shape {tuple(mask.shape)} does not match "
                                   f"lora_B {tuple(weight.shape)}")
            indices = mask.to(weight.device).reshape(-1).nonzero().squeeze(1)
            values = weight.detach().reshape(-1)[indices].float().clone()
            parametrize.register_parametrization(lin, "weight", ScatterKept(indices, values))
            self._modules.append(lin)
            self._params.append(lin.parametrizations.weight[0].values)
            self.kept += indices.numel()
            self.total += weight.numel()

    def finalize(self) -> None:
        """Bake the scattered values into each PEFT lora_B weight and drop the parametrization."""
        for lin in self._modules:
            if parametrize.is_parametrized(lin, "weight"):
                parametrize.remove_parametrizations(lin, "weight", leave_parametrized=True)
                lin.weight.requires_grad_(False)

    def describe(self) -> dict:
        return {"trainable_parameters": self.kept, "b_entries": self.total,
                "kept_fraction": self.kept / self.total if self.total else 0.0}

    def mask_record(self) -> dict:
        return {"kept": self.kept, "total": self.total, "kept_fraction": self.kept / self.total}
