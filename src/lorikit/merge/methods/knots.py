"""``knots``: KnOTS (Stoica et al., "Model merging with SVD to tie the KnOTS", ICLR 2025).

Per module, the task updates ΔW_t = s_t B_t A_t (out × in) are concatenated side by side and
decomposed once, giving a shared basis U Σ and one block V_t per task:

    [ΔW_1 … ΔW_T] = U Σ [V_1ᵀ … V_Tᵀ]          (thin SVD, components with σ > 1e-6 σ_max)
    ΔW = U · inner(Σ V_1ᵀ, …, Σ V_Tᵀ)           (the inner method on the k × in blocks Σ V_tᵀ)

``--inner`` is an entrywise method (ties by default: KnOTS-TIES, the paper's method;
task-arithmetic, dare-ties, ...) or tsv-m / iso-c / iso-cts, with its own options (``--density``,
``--drop-rate``, ``--lambda``) and the per-adapter ``--weights``. (With task-arithmetic inside,
U · Σ_t w_t Σ V_tᵀ = Σ_t w_t ΔW_t: KnOTS adds nothing to plain task arithmetic.) As in the
authors' code (gstoica27/KnOTS), the inner method sees Σ V_tᵀ (the singular values applied),
and the result is rebuilt as U · merged. Differences: lorikit trims TIES per module (as its
``ties``), where the reference trims the whole model's concatenated vector.

In factor space: [ΔW_1 … ΔW_T] = B_cat · blockdiag(A_1, …, A_T) with B_cat = [s_1 B_1 … s_T B_T];
B_cat = P_B L_B and A_tᵀ = P_t L_t from their (Σ r)² and r_t² Gram matrices (``ops.split``)
reduce the SVD to one of size (Σ r)²; each block is V_tᵀ = v_tᵀ P_tᵀ. Adapters of different
ranks are fine. The output adapter has rank k ≤ Σ r_t.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ...adapters.state import LoraModule
from ..inner import INNER, run_inner
from ..ops import KEEP_RTOL, split, to_module
from ..registry import DeltaParams, register

# KnOTS' own default: TIES in the aligned space (KnOTS-TIES); core-space keeps task arithmetic
KNOTS_INNER = dataclasses.replace(INNER, default="ties")

def knots_blocks(modules: list[LoraModule]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(U out × k float64, [Σ V_tᵀ (k × in) per task] float32) of the concatenation [ΔW_1 … ΔW_T].

    The decomposition runs in float64; the blocks the inner method merges are float32 (the
    authors' choice too), which halves the largest buffers of the merge (T · k · in entries).
    """
    import torch

    B_cat = torch.cat([m.scaling * m.B.double() for m in modules], dim=1)
    Cb, Lb = split(B_cat)
    parts = [split(m.A.T) for m in modules]  # A_tᵀ = P_t L_t, P_t = A_tᵀ C_t
    u, S, vh = torch.linalg.svd(Lb @ torch.block_diag(*[L.T for _, L in parts]), full_matrices=False)
    keep = S > KEEP_RTOL * S[0]
    keep[:1] = True  # at least one direction, so an all-zero update stays a (zero) rank-1 adapter
    u, S, vh = u[:, keep], S[keep], vh[keep]
    blocks, start = [], 0
    for m, (C, L) in zip(modules, parts):  # V_tᵀ = vh_t P_tᵀ = (vh_t C_tᵀ) A_t
        width = L.shape[0]
        blocks.append((S[:, None] * ((vh[:, start:start + width] @ C.T) @ m.A.double())).float())
        start += width
    return B_cat @ (Cb @ u), blocks


@register("knots", "factor", title="KnOTS",
          paper="Stoica et al. 2025, Model merging with SVD to tie the KnOTS, ICLR",
          params=(KNOTS_INNER,), inner=True, min_adapters=2,
          summary="SVD of [ΔW_1 … ΔW_T] = U Σ [V_tᵀ]; inner merge of the Σ V_tᵀ; ΔW = U · merged")
def knots(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    U, blocks = knots_blocks(modules)
    return to_module(modules[0].name, U, run_inner(blocks, weights, params))
