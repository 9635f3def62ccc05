"""``task-arithmetic`` (Ilharco et al. 2023) on per-module LoRA updates.

    ΔW = λ Σ_i w_i ΔW_i,   ΔW_i = s_i B_i A_i   (float32)

PEFT's ``merge_utils.task_arithmetic`` computes the weighted sum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..registry import LAM, DeltaParams, register


@register("task-arithmetic", "delta", title="Task Arithmetic",
          paper="Ilharco et al. 2023, Editing Models with Task Arithmetic, ICLR",
          params=(LAM,), summary="ΔW = λ Σ w_i ΔW_i", aliases=("task_arithmetic", "svd"))
def task_arithmetic(deltas: list[torch.Tensor], weights: torch.Tensor, params: DeltaParams) -> torch.Tensor:
    from peft.utils.merge_utils import task_arithmetic as _weighted_sum

    return params.lam * _weighted_sum(deltas, weights)
