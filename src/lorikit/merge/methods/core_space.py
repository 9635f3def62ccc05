"""``core-space``: Core Space merging (Panariello et al., "Accurate and Efficient Low-Rank Model
Merging in Core Space", NeurIPS 2025).

Per module, with the adapters' raw factors A_t (r_t × in) and B_t (out × r_t):

    U_B = left singular vectors of [B_1 … B_T]      (out × k_B)
    V_A = right singular vectors of [A_1; …; A_T]    (in × k_A)
    M_t = U_Bᵀ (s_t B_t A_t) V_A                     task t's core (k_B × k_A, k ≤ Σ r_t)
    ΔW  = U_B · inner(M_1, …, M_T) · V_Aᵀ

Every B_t A_t lies in span(U_B) × span(V_A), so U_B M_t V_Aᵀ = ΔW_t exactly: with task
arithmetic as the inner method the result equals plain task arithmetic of the ΔW (lossless),
and any method run on the small cores costs (Σ r)² instead of out × in. ``--inner`` is an
entrywise method (task-arithmetic, ties, dare-ties, ...) or ``tsv-m`` / ``iso-c`` / ``iso-cts``,
each with its own options and the per-adapter ``--weights``. Bases from the SVD of the stacked
raw factors as in the authors' code (apanariello4/core-space-merging), computed in factor space
(QR, then an SVD of the Σ r × Σ r triangle). Adapters of different ranks are fine.
"""

from __future__ import annotations

import torch

from ...adapters.state import LoraModule
from ..inner import INNER, run_inner
from ..ops import to_module
from ..registry import DeltaParams, register


def left_basis(B: torch.Tensor) -> torch.Tensor:
    """Left singular vectors of B (m × k), thin, float64, via QR + SVD of the k × k triangle."""
    Q, R = torch.linalg.qr(B.double())
    u, _, _ = torch.linalg.svd(R, full_matrices=False)
    return Q @ u


def core_matrices(modules: list[LoraModule]) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """(U_B, [M_t], V_A) for one module, float64."""
    U_B = left_basis(torch.cat([m.B for m in modules], dim=1))
    V_A = left_basis(torch.cat([m.A for m in modules], dim=0).T)
    cores = [m.scaling * (U_B.T @ m.B.double()) @ (m.A.double() @ V_A) for m in modules]
    return U_B, cores, V_A


@register("core-space", "factor", params=(INNER,), inner=True, min_adapters=2,
          summary="cores M_t = U_Bᵀ ΔW_t V_A in the stacked factors' bases; inner merge; U_B M V_Aᵀ")
def core_space(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    U_B, cores, V_A = core_matrices(modules)
    merged = run_inner(cores, weights, params)
    return to_module(modules[0].name, U_B @ merged, V_A.T)
