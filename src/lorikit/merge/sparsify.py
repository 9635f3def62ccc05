"""Sparsify and consensus steps the merge methods share (TIES, DARE, magnitude prune, ...).

One home for them so that method files never import each other:

- ``trim``: keep each task's top-k entries by magnitude (``kth_largest_abs`` finds the threshold);
- ``drop_and_rescale``: DARE's random drop with survivors rescaled by 1 / (1 − p);
- ``elect_and_merge``: TIES' sign election and disjoint mean (PEFT's ``merge_utils``; mergekit's
  normalisation with ``divide_by``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from .ops import weighted


def kth_largest_abs(delta: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest |entry|, exactly; a sampled quantile brackets it so only a thin band is ranked."""
    import torch

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
    import torch

    k = int(density * delta.numel())
    if density >= 1.0 or k >= delta.numel():
        return delta
    if k == 0:
        return torch.zeros_like(delta)
    return torch.where(delta.abs() >= kth_largest_abs(delta, k), delta, torch.zeros_like(delta))


def drop_and_rescale(delta: torch.Tensor, drop_rate: float, generator: torch.Generator) -> torch.Tensor:
    """Zero each entry with probability ``drop_rate``; scale the survivors by 1 / (1 − drop_rate)."""
    import torch

    if drop_rate <= 0.0:
        return delta
    keep = torch.rand(delta.shape, generator=generator, dtype=torch.float32) >= drop_rate
    return delta * keep / (1.0 - drop_rate)


def elect_and_merge(tensors: list[torch.Tensor], weights: torch.Tensor, divide_by: str = "count") -> torch.Tensor:
    """Σ_i w_i τ_i over entries agreeing with the elected sign, divided as ``divide_by`` says."""
    import torch
    from peft.utils.merge_utils import calculate_majority_sign_mask, disjoint_merge

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
