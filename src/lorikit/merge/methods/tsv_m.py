"""``tsv-m``: Task Singular Vectors merging (Gargiulo et al., "Task Singular Vectors: Reducing
Task Interference in Model Merging", CVPR 2025).

Per module, each task keeps its top-k_t singular triplets, the concatenated singular vectors are
decorrelated across tasks by their orthogonal Procrustes (polar) factor, and the triplets summed:

    w_t ΔW_t ≈ U_t S_t V_tᵀ  (top k_t),   k_t = min(⌊f · min(out, in)⌋, r_t),   f = 1/T by default
    U = [U_1 … U_T],  V = [V_1 … V_T],  S = diag(S_1, …, S_T)
    U⊥ = P_U Q_Uᵀ from U = P_U Σ_U Q_Uᵀ   (likewise V⊥)
    ΔW = λ · U⊥ S V⊥ᵀ

f = 1/T is the authors' choice (AntoAndGar/task_singular_vectors: ``sv_reduction = 1 / T`` of the
module's full rank). A LoRA update has only r_t non-zero singular values, so k_t is capped at
r_t (beyond it the reference would add zero singular values with arbitrary vectors), and
directions of zero strength (an all-zero adapter, a zero weight) are dropped before the
decorrelation, which acts on the span of the kept vectors only (``ops.polar``): adapters that share
a subspace (LoRI-D adapters with the same seed share A) put nothing outside it. All in
factor space: each task's SVD from the Gram matrices of its factors, the Procrustes factors of
out × Σk and in × Σk matrices. The output adapter has rank Σ k_t; adapters of different ranks are fine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ...adapters.state import LoraModule
from ..ops import KEEP_RTOL, polar, svd_of_product, to_module
from ..registry import LAM, DeltaParams, Param, register

SV_FRACTION = Param("sv_fraction", float, None, "tsv-m: share f of each module's singular directions a task "
                    "keeps, k_t = min(⌊f · min(out, in)⌋, r_t) (default 1/T)", low=0.0, high=1.0, low_open=True)


def task_triplets(modules: list[LoraModule], weights: list[float], fraction: float | None):
    """Per task (U_t, S_t, V_t) of w_t ΔW_t truncated to k_t, float64, without its zero-strength
    directions (σ ≤ KEEP_RTOL σ_max over all tasks): an all-zero adapter or weight contributes no
    direction, rather than an arbitrary one that would then be orthogonalised against the others."""
    out, inp = modules[0].B.shape[0], modules[0].A.shape[1]
    share = int((fraction if fraction is not None else 1.0 / len(modules)) * min(out, inp))
    triplets = []
    for m, w in zip(modules, weights):
        U, S, V = svd_of_product((w * m.scaling) * m.B.double(), m.A.double())
        k = max(1, min(share, S.numel()))
        triplets.append((U[:, :k], S[:k], V[:, :k]))
    top = max(float(S.max()) if S.numel() else 0.0 for _, S, _ in triplets)
    return [(U[:, S > KEEP_RTOL * top], S[S > KEEP_RTOL * top], V[:, S > KEEP_RTOL * top]) for U, S, V in triplets]


@register("tsv-m", "factor", title="TSV-Merge",
          paper="Gargiulo et al. 2025, Task Singular Vectors: Reducing Task Interference in "
                "Model Merging, CVPR",
          params=(LAM, SV_FRACTION), min_adapters=2,
          summary="top-k_t task singular vectors, decorrelated (Procrustes) across tasks, summed; × λ")
def tsv_m(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    import torch

    triplets = task_triplets(modules, weights, params.sv_fraction)
    if sum(t[1].numel() for t in triplets) == 0:  # every task's update is zero: so is the merge
        out, inp = modules[0].B.shape[0], modules[0].A.shape[1]
        return to_module(modules[0].name, torch.zeros(out, 1, dtype=torch.float64), torch.zeros(1, inp))
    U = polar(torch.cat([t[0] for t in triplets], dim=1))
    S = torch.cat([t[1] for t in triplets])
    V = polar(torch.cat([t[2] for t in triplets], dim=1))
    return to_module(modules[0].name, params.lam * U * S, V.T)
