"""``dare-linear`` and ``dare-ties`` (DARE, Yu et al. 2024) on per-module LoRA updates.

Drop and rescale, per task and module, with drop rate p and a seeded generator:

    τ_i = ΔW_i ⊙ M_i / (1 − p),   M_i ~ Bernoulli(1 − p) entrywise

then ``dare-linear``: ΔW = λ Σ_i w_i τ_i, or ``dare-ties``: TIES' sign election and disjoint mean
on τ_i (no magnitude trim), × λ. The generator of task i in module m is seeded with
sha256(seed, i, m), so a merge is reproducible and independent of module order or sharding
(PEFT's ``random_pruning`` draws from the global RNG, hence not reused; the election and mean
are PEFT's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..ops import weighted
from ..registry import DIVIDE_BY, DROP_RATE, LAM, SEED, DeltaParams, register
from ..sparsify import drop_and_rescale, elect_and_merge

# PEFT and mergekit give DARE's kept fraction as 'density'
DENSITY_ALIAS = {"density": ("drop_rate", lambda density: 1.0 - float(density))}


def _dropped(deltas: list[torch.Tensor], params: DeltaParams) -> list[torch.Tensor]:
    return [drop_and_rescale(d, params.drop_rate, params.generator(i)) for i, d in enumerate(deltas)]


@register("dare-linear", "delta", title="DARE (linear)",
          paper="Yu et al. 2024, Language Models are Super Mario: Absorbing Abilities from "
                "Homologous Models as a Free Lunch, ICML",
          params=(LAM, DROP_RATE, SEED), summary="random drop p, rescale 1/(1−p), λ Σ w_i",
          aliases=("dare_linear", "dare_linear_svd"), param_aliases=DENSITY_ALIAS)
def dare_linear(deltas: list[torch.Tensor], weights: torch.Tensor, params: DeltaParams) -> torch.Tensor:
    import torch

    dropped = torch.stack(_dropped(deltas, params), dim=0)
    return params.lam * weighted(dropped, weights).sum(dim=0)


@register("dare-ties", "delta", title="DARE-TIES",
          paper="Yu et al. 2024, Language Models are Super Mario: Absorbing Abilities from "
                "Homologous Models as a Free Lunch, ICML",
          params=(LAM, DROP_RATE, SEED, DIVIDE_BY),
          summary="random drop p, rescale, TIES sign election", aliases=("dare_ties", "dare_ties_svd"),
          param_aliases=DENSITY_ALIAS)
def dare_ties(deltas: list[torch.Tensor], weights: torch.Tensor, params: DeltaParams) -> torch.Tensor:
    return params.lam * elect_and_merge(_dropped(deltas, params), weights, params.divide_by)
