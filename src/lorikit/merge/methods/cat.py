"""``cat``: the exact merge of LoRA adapters (the LoRI reference's default).

Per module, with weights w_i and scales s_i:

    A' = concat_rows(A_1, …, A_N)                       (Σ r_i × in)
    B' = concat_cols(w_1 s_1 B_1, …, w_N s_N B_N) / s'  (out × Σ r_i),   s' = 1
    ⇒ s' B' A' = Σ_i w_i s_i B_i A_i

exactly, for adapters with different A (LoRI's per-task random projections) and different ranks.
PEFT's ``add_weighted_adapter(combination_type="cat")`` is the same product with w_i s_i put on A.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ...adapters.state import LoraModule
from ..registry import DeltaParams, register


@register("cat", "adapter", title="Concatenation (exact)",
          paper="Zhang et al. 2025, LoRI: Reducing Cross-Task Interference in Multi-Task "
                "Low-Rank Adaptation (its reference merge)",
          summary="exact: concatenate ranks, ΔW = Σ w_i s_i B_i A_i")
def cat(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    import torch

    A = torch.cat([m.A.float() for m in modules], dim=0)
    B = torch.cat([(w * m.scaling) * m.B.float() for m, w in zip(modules, weights)], dim=1)
    return LoraModule(modules[0].name, A, B, scaling=1.0)
