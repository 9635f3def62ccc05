"""Principal angles and subspace overlap between adapters' ΔW column and row spaces.

For ΔW = s · B A (B out × r, A r × in) the column space is range(ΔW) ⊆ range(B) and the row
space is range(ΔWᵀ) ⊆ range(Aᵀ). Both are read off the factors without forming ΔW:

    B = Q_B R_B,  Aᵀ = Q_A R_A        (thin QR, Q_B out × r, Q_A in × r)
    ΔW = s · Q_B (R_B R_Aᵀ) Q_Aᵀ,      R_B R_Aᵀ = U Σ Vᵀ   (SVD of an r × r core)
    column basis = Q_B U_k,  row basis = Q_A V_k,  k = #{σ > tol · σ_max}

so a B with zero columns (untrained, or LoRI-S sparse) gives the true, smaller rank. For two
orthonormal bases U1 (n × k1), U2 (n × k2) the cosines of the principal angles θ_j are the
singular values of U1ᵀ U2, and

    overlap(U1, U2) = (1 / min(k1, k2)) Σ_j cos² θ_j = ‖U1ᵀ U2‖_F² / min(k1, k2)

which is 1 when one subspace contains the other (identical adapters) and 0 when they are
orthogonal. An adapter whose ΔW is exactly zero has no subspace: its overlap is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..adapters.state import LoraModule

DEFAULT_TOL = 1e-6


@dataclass
class DeltaBases:
    """Orthonormal bases of range(ΔW) (``col``, out × k) and range(ΔWᵀ) (``row``, in × k)."""

    col: torch.Tensor
    row: torch.Tensor
    singular_values: torch.Tensor  # the k non-zero singular values of ΔW, descending

    @property
    def rank(self) -> int:
        return self.col.shape[1]


def delta_bases(module: LoraModule, tol: float = DEFAULT_TOL, top_k: int | None = None) -> DeltaBases:
    """Bases of ΔW's column and row spaces from the factors (float64); ``top_k`` keeps the leading ones."""
    A = module.A.to(torch.float64)
    B = module.B.to(torch.float64)
    q_b, r_b = torch.linalg.qr(B)  # out × r, r × r
    q_a, r_a = torch.linalg.qr(A.T)  # in × r, r × r
    U, S, Vh = torch.linalg.svd(r_b @ r_a.T)
    S = S * abs(module.scaling)
    k = int((S > tol * S.max()).sum()) if S.numel() and S.max() > 0 else 0
    if top_k is not None:
        k = min(k, top_k)
    return DeltaBases(col=q_b @ U[:, :k], row=q_a @ Vh[:k].T, singular_values=S[:k])


def principal_cosines(U1: torch.Tensor, U2: torch.Tensor) -> torch.Tensor:
    """cos θ_j of the principal angles between the spans of two orthonormal bases (descending)."""
    if U1.shape[0] != U2.shape[0]:
        raise ValueError(f"bases live in different spaces ({U1.shape[0]} vs {U2.shape[0]} dimensions)")
    if U1.shape[1] == 0 or U2.shape[1] == 0:
        return torch.zeros(0, dtype=torch.float64)
    return torch.linalg.svdvals(U1.T.to(torch.float64) @ U2.to(torch.float64)).clamp(max=1.0)


def overlap(U1: torch.Tensor, U2: torch.Tensor) -> float:
    """Mean cos² of the principal angles: ‖U1ᵀU2‖_F² / min(k1, k2); NaN when either is empty."""
    k = min(U1.shape[1], U2.shape[1])
    if k == 0:
        return math.nan
    return float((principal_cosines(U1, U2) ** 2).sum() / k)


def module_overlap(m1: LoraModule, m2: LoraModule, tol: float = DEFAULT_TOL,
                   top_k: int | None = None) -> dict[str, float]:
    """``{"row": overlap of row spaces, "col": overlap of column spaces}`` of two adapters' ΔW."""
    b1, b2 = delta_bases(m1, tol, top_k), delta_bases(m2, tol, top_k)
    return {"row": overlap(b1.row, b2.row), "col": overlap(b1.col, b2.col)}
