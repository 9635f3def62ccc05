"""Shared tensor operations of the merge methods: weighting, and linear algebra in factor space.

A task's update is ΔW_t = s_t B_t A_t with B_t (out × r_t), A_t (r_t × in). Everything the
SVD-based methods need lives in the span of the factors, so it is computed from the k × k Gram
matrices of the factors (k = Σ r) and SVDs of k × k matrices, never from an out × in matrix:

    XᵀX = W Λ Wᵀ  ⇒  X = P L with P = X W Λ^-½ orthonormal (X's left singular vectors), L = Λ^½ Wᵀ
    B = P_B L_B,  Aᵀ = P_A L_A  ⇒  B A = P_B (L_B L_Aᵀ) P_Aᵀ,  L_B L_Aᵀ = u S vᵀ  ⇒  U = P_B u, V = P_A v

(``split``, ``svd_of_product``): one pass over each factor (the Gram matrix) and one product to
form the output basis. Linear algebra runs in float64, so directions with σ < 1e-7 σ_max (lost
to the squared condition number of the Gram matrix) are treated as zero, below the 1e-6 σ_max
at which every method here drops a direction anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..adapters.state import LoraModule

KEEP_RTOL = 1e-6  # singular values below this fraction of the largest are numerically zero
GRAM_RTOL = 1e-14  # the same for eigenvalues of a Gram matrix (σ²), below KEEP_RTOL²


def weighted(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``stacked`` [N, ...] with task i multiplied by ``weights[i]`` (broadcast over the rest)."""
    return stacked * weights.to(stacked.dtype).view(-1, *([1] * (stacked.dim() - 1)))


def split(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, L) with X = (X C) L, X C orthonormal columns (X's left singular vectors), float64.

    From the eigendecomposition of XᵀX (k × k): C = W Λ^-½, L = Λ^½ Wᵀ, directions with
    σ² ≤ 1e-14 σ_max² dropped (always at least one kept). Cost O(m k²) for X of m × k.
    """
    import torch

    X = X.double()
    lam, W = torch.linalg.eigh(X.T @ X)
    lam, W = lam.flip(0), W.flip(1)  # descending
    keep = lam > GRAM_RTOL * lam[0].clamp(min=0)
    keep[:1] = True
    lam, W = lam[keep].clamp(min=0), W[:, keep]
    root = lam.sqrt()
    return W / torch.where(root > 0, root, torch.ones_like(root)), root[:, None] * W.T


def svd_of_product(B: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of B @ A (B: m × k, A: k × n) from the factors: (U m × k', S k', V n × k'), float64.

    k' ≤ min(k, m, n) (numerically zero directions dropped); cost O((m + n) k²), the m × n
    product is never formed. Singular values in descending order, as ``torch.linalg.svd``.
    """
    import torch

    Cb, Lb = split(B)
    Ca, La = split(A.T)
    u, S, vh = torch.linalg.svd(Lb @ La.T, full_matrices=False)
    return B.double() @ (Cb @ u), S, A.double().T @ (Ca @ vh.T)


def polar(M: torch.Tensor) -> torch.Tensor:
    """The orthonormal factor of M (m × k, m ≥ k) on M's range: P Qᵀ from M = P Σ Qᵀ (orthogonal
    Procrustes), over the singular directions with σ > KEEP_RTOL σ_max only.

    For a full-rank M this is the polar factor. For a rank-deficient M (the singular vectors of two
    adapters that share a subspace) the full polar factor is not unique: its part on M's null space
    is whatever the SVD solver returns, directions no input spans. Here that part is zero instead
    (a partial isometry), so the result lies in the span of M's columns."""
    import torch

    P, S, Qh = torch.linalg.svd(M.double(), full_matrices=False)
    keep = S > KEEP_RTOL * S[0] if S.numel() and S[0] > 0 else torch.zeros_like(S, dtype=torch.bool)
    return P[:, keep] @ Qh[keep, :]


def stacked_factors(modules: list[LoraModule], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """B_cat = [w_1 s_1 B_1 … w_T s_T B_T] (out × Σr), A_cat = [A_1; …; A_T] (Σr × in), float64.

    B_cat @ A_cat = Σ_t w_t ΔW_t: the task-arithmetic sum in factor form (``cat``'s factors).
    """
    import torch

    B = torch.cat([(w * m.scaling) * m.B.double() for m, w in zip(modules, weights)], dim=1)
    A = torch.cat([m.A.double() for m in modules], dim=0)
    return B, A


def to_module(name: str, B: torch.Tensor, A: torch.Tensor) -> LoraModule:
    """A float32 LoraModule with scaling 1 from float64 factors."""
    return LoraModule(name, A.float().contiguous(), B.float().contiguous(), scaling=1.0)


def truncate(module: LoraModule, rank: int | None = None) -> tuple[LoraModule, float, float]:
    """Best rank-``rank`` approximation of a factored update, in factor space.

    ``rank=None`` keeps every direction above 1e-6 σ_max (the exact update in its numerical rank).
    Returns (LoraModule with B = U_r S_r, A = V_rᵀ, s = 1; squared residual ‖ΔW − B A‖_F²; squared
    norm ‖ΔW‖_F²), the same report as ``svd.factor`` gives for a dense ΔW (Eckart–Young).
    """
    U, S, V = svd_of_product(module.scaling * module.B.double(), module.A.double())
    r = min(rank, S.numel()) if rank is not None else max(1, int((S > KEEP_RTOL * S[0]).sum()))
    energy = S ** 2
    return to_module(module.name, U[:, :r] * S[:r], V[:, :r].T), float(energy[r:].sum()), float(energy.sum())
