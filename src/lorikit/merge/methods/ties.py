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
rule with a faster threshold selection (see ``trim``).
"""

from __future__ import annotations

import torch
from peft.utils.merge_utils import calculate_majority_sign_mask, disjoint_merge

from ..ops import weighted
from ..registry import DENSITY, LAM, DeltaParams, Param, register


def kth_largest_abs(delta: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest |entry|, exactly; a sampled quantile brackets it so only a thin band is ranked."""
    flat = delta.abs().reshape(-1)
    n = flat.numel()
    if n <= 1 << 20:
        return torch.kthvalue(flat, n - k + 1).values
    sample = flat[torch.randint(n, (1 << 20,), generator=torch.Generator().manual_seed(0))]
    q = 1.0 - k / n
    lo, hi = torch.quantile(sample, torch.tensor([max(q - 0.01, 0.0), min(q + 0.01, 1.0)]))
    above = int((flat > hi).sum())
    band = flat[(flat >= lo) & (flat <= hi)]
    if above >= k or above + band.numel() < k:  # the sample missed (never seen in practice): rank everything
        return torch.kthvalue(flat, n - k + 1).values
    return torch.kthvalue(band, band.numel() - (k - above) + 1).values


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ⌊density · numel⌋ largest-magnitude entries of one task's update, zero the rest.

    Same as PEFT's ``magnitude_based_pruning`` up to exact ties at the threshold (kept here), but
    selects the threshold instead of running ``topk`` over millions of entries (~5× faster on a
    14336 × 4096 update).
    """
    k = int(density * delta.numel())
    if density >= 1.0 or k >= delta.numel():
        return delta
    if k == 0:
        return torch.zeros_like(delta)
    return torch.where(delta.abs() >= kth_largest_abs(delta, k), delta, torch.zeros_like(delta))


DIVIDE_BY = Param("divide_by", str, "count", "TIES' disjoint mean: count (PEFT, the paper: sign of Σ τ_i, divided by "
                  "the number of agreeing tasks), weights (mergekit's normalize: sign of Σ w_i τ_i, divided by the "
                  "agreeing weights' sum) or none (mergekit's normalize: false)",
                  choices=lambda: ("count", "weights", "none"))


def elect_and_merge(tensors: list[torch.Tensor], weights: torch.Tensor, divide_by: str = "count") -> torch.Tensor:
    """Σ_i w_i τ_i over entries agreeing with the elected sign, divided as ``divide_by`` says."""
    stacked = torch.stack(tensors, dim=0)
    if divide_by == "count":
        agree = calculate_majority_sign_mask(stacked, method="total")
        return disjoint_merge(weighted(stacked, weights), agree)
    scaled = weighted(stacked, weights)
    agree = scaled.sign() == torch.where(scaled.sum(dim=0) >= 0, 1.0, -1.0)  # mergekit's get_mask("sum")
    total = (scaled * agree).sum(dim=0)
    if divide_by == "none":
        return total
    divisor = weighted(agree.to(stacked.dtype), weights).sum(dim=0)
    return total / torch.where(divisor == 0, torch.ones_like(divisor), divisor)


@register("ties", "delta", params=(LAM, DENSITY, DIVIDE_BY), aliases=("ties_svd",),
          summary="trim top-k per task, elect sign, disjoint mean, × λ")
def ties(deltas: list[torch.Tensor], weights: torch.Tensor, params: DeltaParams) -> torch.Tensor:
    return params.lam * elect_and_merge([trim(d, params.density) for d in deltas], weights, params.divide_by)
