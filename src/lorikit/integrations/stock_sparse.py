"""LoRI-S inside any training loop, with every save a stock PEFT adapter.

``adapters.methods.plans.SparsePlan`` trains only the kept entries of each B through a
``torch.nn.utils.parametrize`` scatter (gradients and optimizer state ∝ kept entries, masked
entries read from a frozen zero B₀ and so exactly zero at every step). A parametrized module's
``state_dict`` however holds ``lora_B.default.parametrizations.weight.original`` and
``...parametrizations.weight.0.values``: PEFT's ``save_pretrained`` would write those keys and
``PeftModel.from_pretrained`` would silently ignore them (a 'missing keys' warning, B = 0).

``StockSparsePlan`` adds two hooks to every parametrized ``lora_B`` Linear, so the module reads
and writes like a plain Linear wherever a state dict is used — ``save_pretrained`` in Trainer
checkpoints (``save_steps``), ``trainer.save_model``, ``push_to_hub``, and PEFT's
``load_adapter`` when Trainer resumes from a checkpoint:

- state dict out: the parametrization entries are replaced by ``weight`` = the dense B
  (kept values scattered into zeros);
- state dict in: a ``weight`` is split back into the kept ``values``; a non-zero entry outside
  the mask is an error naming the key (it would not fit this mask).
"""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from ..adapters.build import lora_layers
from ..errors import LorikitError
from ..adapters.methods.plans import SparsePlan

_PARAM_PREFIX = "parametrizations.weight."


def _state_dict_out(module, state_dict, prefix, local_metadata) -> None:
    if not parametrize.is_parametrized(module, "weight"):
        return
    for key in [k for k in state_dict if k.startswith(prefix + "parametrizations.")]:
        del state_dict[key]
    state_dict[prefix + "weight"] = module.weight.detach()


def _state_dict_in(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                   error_msgs) -> None:
    key = prefix + "weight"
    if key not in state_dict or not parametrize.is_parametrized(module, "weight"):
        return
    dense = state_dict.pop(key)
    scatter = module.parametrizations.weight[0]
    original = module.parametrizations.weight.original
    if tuple(dense.shape) != tuple(original.shape):
        error_msgs.append(f"{key}: shape {tuple(dense.shape)} does not match lora_B {tuple(original.shape)}")
        return
    flat = dense.detach().reshape(-1).to(original.device)
    outside = torch.ones_like(flat, dtype=torch.bool)
    outside[scatter.indices] = False
    if bool((flat[outside] != original.detach().reshape(-1)[outside]).any()):
        error_msgs.append(f"{key}: has non-zero entries outside this model's LoRI-S mask")
        return
    state_dict[prefix + _PARAM_PREFIX + "original"] = original.detach()
    state_dict[prefix + _PARAM_PREFIX + "0.indices"] = scatter.indices
    state_dict[prefix + _PARAM_PREFIX + "0.values"] = flat[scatter.indices].to(scatter.values.dtype)


class StockSparsePlan(SparsePlan):
    """``SparsePlan`` whose modules save and load as plain PEFT ``lora_B`` weights."""

    def __init__(self, peft_model, masks: dict[str, torch.Tensor], adapter_name: str = "default"):
        super().__init__(peft_model, masks, adapter_name)
        self.masks = {name: masks[name].to(torch.bool) for name, _ in lora_layers(peft_model, adapter_name)}
        self._handles = []
        for lin in self._modules:
            self._handles.append(lin.register_state_dict_post_hook(_state_dict_out))
            self._handles.append(lin.register_load_state_dict_pre_hook(_state_dict_in))

    def finalize(self) -> None:
        """Bake B into plain PEFT weights (no parametrization, no hooks); the model stops training."""
        super().finalize()
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def masked_nonzero(self) -> int:
        """Entries of B outside the mask that are not exactly zero (0 for a correct LoRI-S model)."""
        count = 0
        for lin, mask in zip(self._modules, self.masks.values()):
            count += int((lin.weight.detach()[~mask.to(lin.weight.device)] != 0).sum())
        return count

    def check(self) -> None:
        bad = self.masked_nonzero()
        if bad:
            raise LorikitError(f"LoRI-S: {bad} entries of B outside the mask are non-zero")
