"""``ties`` (TIES-Merging, Yadav et al. 2023) on per-module LoRA updates.

For each module, with task updates ΔW_i = s_i B_i A_i (float32):

1. trim: keep the top-k entries of |ΔW_i| per task, k = ⌊density · numel(ΔW_i)⌋ → τ_i
   (over the adapter's own ΔW of this module: trimming a whole model's task vector, where LoRA
   touched 8–14 % of the weights, keeps everything and is a no-op);
2. elect: γ = sign(Σ_i τ_i)  (0 counts as +, as PEFT's ``calculate_majority_sign_mask``);
3. disjoint mean over agreeing entries: ΔW = λ · Σ_i w_i τ_i [sign τ_i = γ] / max(1, Σ_i [sign τ_i = γ]).

With w_i = 1 this is the paper's formula; other weights scale each task's contribution inside the
mean (PEFT's semantics, ``--divide-by count``). ``--divide-by weights`` is mergekit's normalisation:
the sign elected from the weighted sum Σ_i w_i τ_i and the agreeing sum divided by the agreeing
weights, ΔW = λ · Σ_i w_i τ_i [agree] / Σ_i w_i [agree] (equal to ``count`` for equal weights);
``none`` is mergekit's ``normalize: false`` (the agreeing sum, undivided). The election and mean are ``peft.utils.merge_utils``'
``calculate_majority_sign_mask`` and ``disjoint_merge``; the trim is ``magnitude_based_pruning``'s
rule with a faster threshold selection (see ``sparsify.trim``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..registry import DENSITY, DIVIDE_BY, LAM, DeltaParams, register
from ..sparsify import elect_and_merge, trim


@register("ties", "delta", title="TIES-Merging",
          paper="Yadav et al. 2023, TIES-Merging: Resolving Interference When Merging Models, NeurIPS",
          params=(LAM, DENSITY, DIVIDE_BY), aliases=("ties_svd",),
          summary="trim top-k per task, elect sign, disjoint mean, × λ")
def ties(deltas: list[torch.Tensor], weights: torch.Tensor, params: DeltaParams) -> torch.Tensor:
    return params.lam * elect_and_merge([trim(d, params.density) for d in deltas], weights, params.divide_by)
