"""Cosine similarity of two adapters' flattened updates, from the factors.

    ⟨ΔW1, ΔW2⟩_F = s1 s2 tr((B1 A1)ᵀ B2 A2) = s1 s2 tr((B1ᵀ B2)(A2 A1ᵀ))
    ‖ΔW‖_F²      = s² tr((BᵀB)(A Aᵀ))
    cos(ΔW1, ΔW2) = ⟨ΔW1, ΔW2⟩_F / (‖ΔW1‖_F ‖ΔW2‖_F)

Only r × r products are formed (never out × in). Over a whole adapter the flattened vector is the
concatenation of every module's ΔW, so the overall cosine is Σ⟨·,·⟩ / √(Σ‖ΔW1‖² · Σ‖ΔW2‖²).
A zero update has no direction: its cosine is NaN.
"""

from __future__ import annotations

import math

import torch

from ..adapters.state import LoraModule


def delta_inner(m1: LoraModule, m2: LoraModule) -> float:
    """⟨ΔW1, ΔW2⟩_F = s1 s2 tr((B1ᵀB2)(A2A1ᵀ)), in float64."""
    if m1.B.shape[0] != m2.B.shape[0] or m1.A.shape[1] != m2.A.shape[1]:
        raise ValueError(f"{m1.name}: ΔW shapes differ ({m1.B.shape[0]}×{m1.A.shape[1]} vs "
                         f"{m2.B.shape[0]}×{m2.A.shape[1]})")
    A1, B1 = m1.A.to(torch.float64), m1.B.to(torch.float64)
    A2, B2 = m2.A.to(torch.float64), m2.B.to(torch.float64)
    return float(m1.scaling * m2.scaling * torch.trace((B1.T @ B2) @ (A2 @ A1.T)))


def delta_norm_sq(m: LoraModule) -> float:
    """‖ΔW‖_F² = s² tr((BᵀB)(AAᵀ))."""
    return max(0.0, delta_inner(m, m))


def cosine_from_sums(inner: float, norm_sq1: float, norm_sq2: float) -> float:
    denom = math.sqrt(norm_sq1 * norm_sq2)
    return inner / denom if denom > 0 else math.nan


def module_cosine(m1: LoraModule, m2: LoraModule) -> float:
    """cos(vec ΔW1, vec ΔW2) of one module."""
    return cosine_from_sums(delta_inner(m1, m2), delta_norm_sq(m1), delta_norm_sq(m2))
