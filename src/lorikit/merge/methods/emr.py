"""``emr``: EMR-Merging (Huang et al. 2024) — one shared update, a bit-mask and a scale per task.

Per module, with task updates ΔW_i = w_i s_i B_i A_i (float32):

    γ      = sign(Σ_i ΔW_i)                                  elected sign
    m_i    = [ΔW_i ⊙ γ > 0]                                  task i's bit-mask
    τ_uni  = γ ⊙ max_i (|ΔW_i| ⊙ m_i)                         shared update (largest agreeing magnitude)
    λ_i    = Σ|ΔW_i| / Σ|m_i ⊙ τ_uni|                        task i's rescaler (over all modules)

Tuning-free: ``--weights`` pre-scale the task updates; the merged folder is written by
``merge.core.write_emr`` and read by ``merge.emr.EmrFolder``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..emr import EmrModule
from ..ops import weighted
from ..registry import register


@register("emr", "emr", title="EMR-Merging",
          paper="Huang et al. 2024, EMR-Merging: Tuning-Free High-Performance Model Merging, NeurIPS",
          min_adapters=2,
          summary="shared τ_uni = γ · max agreeing |ΔW_i|, per-task mask and rescaler")
def emr(deltas: list[torch.Tensor], weights: torch.Tensor) -> EmrModule:
    import torch

    stacked = weighted(torch.stack(deltas, dim=0), weights)
    sign = torch.sign(stacked.sum(dim=0))
    masks = stacked * sign > 0
    tau = sign * (stacked.abs() * masks).amax(dim=0)
    dims = tuple(range(1, stacked.dim()))
    task_abs = stacked.abs().sum(dim=dims, dtype=torch.float64)
    masked_abs = (masks * tau.abs()).sum(dim=dims, dtype=torch.float64)
    return EmrModule(tau, masks, task_abs, masked_abs)
