"""``linear``: PEFT's ``add_weighted_adapter(combination_type="linear")`` on the factors.

Per module, with c_i = w_i s_i (all ranks equal):

    B' = Σ_i √|c_i| B_i,   A' = Σ_i sign(c_i) √|c_i| A_i,   s' = 1
    ⇒ B' A' = Σ_i c_i B_i A_i  +  Σ_{i≠j} sign(c_j) √|c_i c_j| B_i A_j

The cross terms B_i A_j make this an approximation of Σ w_i s_i B_i A_i. They are small when the
A_i are independent random projections (LoRI: E[A_j A_iᵀ] ≈ 0 only on average, so not zero), and
when all adapters share one A (and c_i ≥ 0) the result is (Σ_j √c_j) (Σ_i √c_i B_i) A, which for
equal c_i is N × ``cat``. Use ``cat`` for the exact sum.
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ...adapters.state import LoraModule
from ...errors import LorikitError
from ..registry import DeltaParams, register


@register("linear", "adapter", title="PEFT linear",
          summary="PEFT linear: B' = Σ √(w_i s_i) B_i, A' = Σ √(w_i s_i) A_i (cross terms)")
def linear(modules: list[LoraModule], weights: list[float], params: DeltaParams) -> LoraModule:
    import torch

    ranks = [m.rank for m in modules]
    if len(set(ranks)) != 1:
        raise LorikitError(f"module {modules[0].name}: --method linear needs equal ranks, got {ranks} "
                           f"(use --method cat for adapters of different rank)")
    A = torch.zeros_like(modules[0].A, dtype=torch.float32)
    B = torch.zeros_like(modules[0].B, dtype=torch.float32)
    for m, w in zip(modules, weights):
        c = w * m.scaling
        root = math.sqrt(abs(c))
        A += (root if c >= 0 else -root) * m.A.float()
        B += root * m.B.float()
    return LoraModule(modules[0].name, A, B, scaling=1.0)
