"""``iso-c`` and ``iso-cts``: isotropic merging (Marczak et al., "No Task Left Behind: Isotropic
Model Merging with Common and Task-Specific Subspaces", ICML 2025).

``iso-c`` flattens the spectrum of the task-arithmetic sum:

    Σ_t w_t ΔW_t = U S Vᵀ   ⇒   ΔW = λ · σ̄ U Vᵀ,   σ̄ = mean(S)

``iso-cts`` keeps the top common directions of the sum and gives every task its own directions
in the rest of the space, then flattens:

    D = rank of the sum,  k_c = D − T · round((D − ⌊c D⌋) / T),  n = (D − k_c) / T
    U_c, S_c, V_c = top k_c triplets of the sum
    task t: top n triplets (U_t, S_t, V_t) of (I − U_c U_cᵀ) w_t ΔW_t
    U = ⊥[U_1 … U_T U_c],  V = ⊥[V_1 … V_T V_c]     (⊥: orthogonal Procrustes / polar factor)
    ΔW = λ · σ̄ U Vᵀ,  σ̄ = mean of all kept singular values

c = ``common_space_fraction`` (default 0.8) and the rounding are the authors'
(danielm1405/iso-merging). There, D is min(out, in) — full fine-tuning updates are full rank. A
sum of LoRA updates has rank D ≤ Σ r_t and zero singular values beyond, so lorikit works in that
D-dimensional span (singular values below 1e-6 σ_max are outside it): the spectrum is flattened
over the directions the adapters actually use, and nothing is added in directions none of them
touched. Everything is computed in factor space from the Gram matrices of the stacked factors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ...adapters.state import LoraModule
from ..ops import KEEP_RTOL, polar, stacked_factors, svd_of_product, to_module
from ..registry import LAM, DeltaParams, Param, register

COMMON = Param("common_space_fraction", float, 0.8, "iso-cts: fraction c of the merged span kept as the "
               "common subspace (the rest is split between tasks)", low=0.0, high=1.0)


def sum_svd(modules: list[LoraModule], weights: list[float]):
    """(U, S, V) of Σ_t w_t ΔW_t restricted to its span, float64."""
    U, S, V = svd_of_product(*stacked_factors(modules, weights))
    keep = S > KEEP_RTOL * S[0]
    keep[:1] = True  # at least one direction, so an all-zero update stays a (zero) rank-1 adapter
    return U[:, keep], S[keep], V[:, keep]


@register("iso-c", "factor", title="Iso-C",
          paper="Marczak et al. 2025, No Task Left Behind: Isotropic Model Merging with Common "
                "and Task-Specific Subspaces, ICML",
          params=(LAM,), summary="task-arithmetic sum with a flat spectrum: λ σ̄ U Vᵀ")
def iso_c(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    U, S, V = sum_svd(modules, weights)
    return to_module(modules[0].name, (params.lam * S.mean()) * U, V.T)


def split_space(rank: int, tasks: int, fraction: float) -> tuple[int, int]:
    """(k_c common directions, n per task) as the authors round them; k_c ≥ 0 (for a small c the
    authors' rounding can give T·n > rank, a negative k_c: then n = ⌊rank / T⌋)."""
    common = int(rank * fraction)
    specific_total = round((rank - common) / tasks) * tasks
    if specific_total > rank:  # rounding up past the span (small c): no common directions, not a negative count
        specific_total = rank // tasks * tasks
    common = rank - specific_total
    return common, (rank - common) // tasks


@register("iso-cts", "factor", title="Iso-CTS",
          paper="Marczak et al. 2025, No Task Left Behind: Isotropic Model Merging with Common "
                "and Task-Specific Subspaces, ICML",
          params=(LAM, COMMON), min_adapters=2,
          summary="common subspace of the sum + task-specific directions, flat spectrum, × λ")
def iso_cts(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    import torch

    U, S, V = sum_svd(modules, weights)
    common, per_task = split_space(S.numel(), len(modules), params.common_space_fraction)
    Uc = U[:, :common]
    us, ss, vs = [], [], []
    for m, w in zip(modules, weights):
        B = (w * m.scaling) * m.B.double()
        if per_task > 0:
            Ut, St, Vt = svd_of_product(B - Uc @ (Uc.T @ B), m.A.double())
            us.append(Ut[:, :per_task]), ss.append(St[:per_task]), vs.append(Vt[:, :per_task])
    Uall = polar(torch.cat(us + [Uc], dim=1))
    Vall = polar(torch.cat(vs + [V[:, :common]], dim=1))
    sigma = torch.cat(ss + [S[:common]]).mean()
    return to_module(modules[0].name, (params.lam * sigma) * Uall, Vall.T)
