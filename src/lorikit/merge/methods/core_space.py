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
each with its own options and the per-adapter ``--weights``. Bases are the singular vectors of the stacked
raw factors as in the authors' code (apanariello4/core-space-merging), obtained from the
(Σ r)² Gram matrices of the stacks; the cores are blocks of those Gram matrices, and the result
is written as B' = [B_1 … B_T], A' = (C_B M C_Aᵀ) [A_1; …; A_T] with U_B = B_stack C_B,
V_A = A_stackᵀ C_A. Adapters of different ranks are fine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ...adapters.state import LoraModule
from ..inner import INNER, run_inner
from ..ops import split, to_module
from ..registry import DeltaParams, register


def core_matrices(modules: list[LoraModule]) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """(C_B, [M_t], C_A) with U_B = B_stack C_B and V_A = A_stackᵀ C_A, all from Gram matrices (float64).

    U_Bᵀ B_t = C_Bᵀ (B_stackᵀ B_t) and A_t V_A = (A_t A_stackᵀ) C_A are blocks of the Gram
    matrices, so the cores cost O((out + in) (Σ r)²) and no out × in or out × Σr product is formed.
    """
    import torch

    B_stack = torch.cat([m.B.double() for m in modules], dim=1)
    A_stack = torch.cat([m.A.double() for m in modules], dim=0)
    C_B, _ = split(B_stack)
    C_A, _ = split(A_stack.T)
    G_B, G_A = B_stack.T @ B_stack, A_stack @ A_stack.T
    cores, start = [], 0
    for m in modules:
        block = slice(start, start + m.rank)
        cores.append(m.scaling * (C_B.T @ G_B[:, block]) @ (G_A[block, :] @ C_A))
        start += m.rank
    return C_B, cores, C_A


@register("core-space", "factor", title="Core Space",
          paper="Panariello et al. 2025, Accurate and Efficient Low-Rank Model Merging in Core "
                "Space, NeurIPS",
          params=(INNER,), inner=True, min_adapters=2,
          summary="cores M_t = U_Bᵀ ΔW_t V_A in the stacked factors' bases; inner merge; U_B M V_Aᵀ")
def core_space(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    import torch

    C_B, cores, C_A = core_matrices(modules)
    merged = run_inner(cores, weights, params).double()
    # ΔW = U_B M V_Aᵀ = B_stack (C_B M C_Aᵀ) A_stack: keep B_stack, fold the small matrix into A
    B_stack = torch.cat([m.B.double() for m in modules], dim=1)
    A_stack = torch.cat([m.A.double() for m in modules], dim=0)
    return to_module(modules[0].name, B_stack, (C_B @ merged @ C_A.T) @ A_stack)
