"""``gaussian``: A ~ N(0, 1/r), the distribution the LoRI paper's analysis assumes.

See docs/methods.md#initialisations.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .base import AdapterInit

if TYPE_CHECKING:
    import torch


class GaussianInit(AdapterInit):
    name = "gaussian"
    summary = "N(0, 1/r), the LoRI paper's analysis"
    title = "Gaussian"
    seeded = True

    def draw(self, generator: torch.Generator, rank: int, in_features: int) -> torch.Tensor:
        import torch  # when drawn, not when the registry is listed (--help)

        return torch.randn(rank, in_features, generator=generator, dtype=torch.float32) / math.sqrt(rank)


INIT = GaussianInit()
