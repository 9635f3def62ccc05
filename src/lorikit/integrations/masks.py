"""LoRI-S masks from a trained LoRI-D adapter — a folder, an ``AdapterState`` or a live PeftModel.

Global scope (the reference): k = int((1 − sparsity) · N) over all N entries of every B, mask =
|B| ≥ the k-th largest |B| (ties kept); ``scope="module"`` does the top-k inside each B.
"""

from __future__ import annotations

import os

import torch

from ..adapters import masks as core
from ..adapters.build import lora_layers
from ..adapters.masks import MaskResult, save_mask
from ..adapters.state import AdapterState, LoraModule
from ..errors import UsageError

__all__ = ["extract_masks", "save_mask"]


def _state_of_model(peft_model, adapter_name: str) -> AdapterState:
    modules = []
    for name, layer in lora_layers(peft_model, adapter_name):
        A = layer.lora_A[adapter_name].weight.detach().float().cpu()
        B = layer.lora_B[adapter_name].weight.detach().float().cpu()
        modules.append(LoraModule(name, A, B, float(layer.scaling[adapter_name])))
    if not modules:
        raise UsageError(f"adapter_or_model: the model has no LoRA adapter named {adapter_name!r}")
    state = AdapterState.from_modules(modules, {"peft_type": "LORA"})
    state.source = "<model>"
    return state


def extract_masks(adapter_or_model, sparsity: float | list[float], scope: str = "global",
                  adapter_name: str = "default") -> MaskResult | list[MaskResult]:
    """Masks keeping the largest-magnitude entries of B (``sparsity`` = fraction zeroed).

    ``adapter_or_model``: an adapter folder / Hub id, an ``AdapterState`` or a PeftModel (e.g. the
    LoRI-D model right after ``trainer.train()``). One sparsity gives one ``MaskResult`` (``.masks``
    is ``{module: bool [out, r]}``, ``.kept_fraction`` the exact kept share), a list gives a list.
    Pass a result to ``get_lori_model(..., method="lori-s", mask=result)`` or ``save_mask``.
    """
    if isinstance(adapter_or_model, torch.nn.Module):
        state = _state_of_model(adapter_or_model, adapter_name)
    elif isinstance(adapter_or_model, (AdapterState, str, os.PathLike)):
        state = adapter_or_model
    else:
        raise UsageError(f"adapter_or_model: expected an adapter folder, AdapterState or PeftModel, "
                         f"got {type(adapter_or_model).__name__}")
    results = core.extract_masks(state, sparsity, scope)
    return results[0] if isinstance(sparsity, (int, float)) else results
