"""``magnitude-prune``: keep each task's largest entries, then task arithmetic.

    ΔW = λ Σ_i w_i top_k(ΔW_i),   k = ⌊density · numel(ΔW_i)⌋ per task and module

PEFT's ``merge_utils.magnitude_prune`` semantics: top-k by |ΔW_i| per tensor (``sparsify.trim``), then
the weighted sum (``merge_utils.task_arithmetic``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..registry import DENSITY, LAM, DeltaParams, register
from ..sparsify import trim


@register("magnitude-prune", "delta", title="Magnitude pruning",
          params=(LAM, DENSITY), summary="top-k |ΔW_i| per task, then λ Σ w_i",
          aliases=("magnitude_prune", "magnitude_prune_svd"))
def magnitude_prune(deltas: list[torch.Tensor], weights: torch.Tensor, params: DeltaParams) -> torch.Tensor:
    from peft.utils.merge_utils import task_arithmetic as _weighted_sum

    return params.lam * _weighted_sum([trim(d, params.density) for d in deltas], weights)
