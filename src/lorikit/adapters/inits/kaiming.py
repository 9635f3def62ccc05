"""``kaiming``: PEFT's default A, ``kaiming_uniform_(a=√5)`` = U(−1/√in, +1/√in) — the LoRI reference's A.

See docs/methods.md#initialisations.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .base import AdapterInit

if TYPE_CHECKING:
    import torch


class KaimingInit(AdapterInit):
    name = "kaiming"
    summary = "U(±1/√in), PEFT's default A (the LoRI reference)"
    title = "Kaiming uniform"
    seeded = True

    def draw(self, generator: torch.Generator, rank: int, in_features: int) -> torch.Tensor:
        import torch  # when drawn, not when the registry is listed (--help)

        bound = 1.0 / math.sqrt(in_features)
        return torch.rand(rank, in_features, generator=generator, dtype=torch.float32) * (2 * bound) - bound


INIT = KaimingInit()
