"""Factor a full update back into LoRA factors by truncated SVD, reporting what is lost.

    ΔW = U S Vᵀ,   B = U_r S_r,   A = V_rᵀ,   s = 1
    relative Frobenius error = ‖ΔW − B A‖_F / ‖ΔW‖_F = √(Σ_{k>r} S_k²) / √(Σ_k S_k²)

(the Eckart–Young optimum at rank r; computed from the singular values, so exact and free).
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..adapters.state import LoraModule


def factor(module: str, delta: torch.Tensor, rank: int) -> tuple[LoraModule, float, float]:
    """(rank-r LoraModule, squared residual norm, squared norm of ``delta``), all float32 math."""
    import torch

    U, S, Vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, S.numel())
    energy = S.double() ** 2
    B = (U[:, :r] * S[:r]).contiguous()
    A = Vh[:r].contiguous()
    return LoraModule(module, A, B, scaling=1.0), float(energy[r:].sum()), float(energy.sum())


class SvdReport:
    """Per-module and overall relative Frobenius errors of the truncation."""

    def __init__(self, rank: int):
        self.rank = rank
        self.modules: dict[str, float] = {}
        self._residual = 0.0
        self._total = 0.0

    def add(self, module: str, residual_sq: float, total_sq: float) -> None:
        self.modules[module] = math.sqrt(residual_sq / total_sq) if total_sq > 0 else 0.0
        self._residual += residual_sq
        self._total += total_sq

    @property
    def overall(self) -> float:
        return math.sqrt(self._residual / self._total) if self._total > 0 else 0.0

    def summary(self) -> dict:
        worst = max(self.modules, key=self.modules.get) if self.modules else None
        return {"rank": self.rank, "relative_frobenius_error": self.overall,
                "max_module": worst, "max_module_error": self.modules.get(worst, 0.0) if worst else 0.0}

    def to_json(self) -> dict:
        return {**self.summary(), "per_module": self.modules}

    def lines(self, top: int = 5) -> list[str]:
        """A short human summary: the overall error and the worst modules."""
        out = [f"truncated SVD at rank {self.rank}: relative Frobenius error {self.overall:.4g} overall"]
        ranked = sorted(self.modules.items(), key=lambda kv: -kv[1])
        shown = ranked if len(ranked) <= top * 2 else ranked[:top]
        out += [f"  {err:.4g}  {module}" for module, err in shown]
        if len(shown) < len(ranked):
            out.append(f"  ... {len(ranked) - len(shown)} more modules (all in svd_errors.json)")
        return out
