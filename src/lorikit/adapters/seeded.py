"""Seeded LoRI projections: A is a deterministic function of (adapter seed, module name).

The reference draws A from system entropy, so runs cannot be reproduced (LoRI issues #8, #10).
Here each module's generator is seeded with ``sha256(f"{seed}:{module}")``, so A can be
regenerated from the seed alone (compact storage, LoRI-S reusing LoRI-D's A) and is independent
of module order, device and sharding.

Initialisations (A is r × in):
- ``kaiming`` — PEFT's default ``kaiming_uniform_(a=√5)``: U(−1/√in, +1/√in) (the reference).
- ``gaussian`` — N(0, 1/r), the distribution the LoRI paper's analysis assumes.
"""

from __future__ import annotations

import hashlib
import math

import torch

from ..errors import UsageError

A_INITS = ("kaiming", "gaussian")


def module_seed(seed: int, module: str) -> int:
    """A 63-bit generator seed derived from the adapter seed and the module path."""
    digest = hashlib.sha256(f"{int(seed)}:{module}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_projection(seed: int, module: str, rank: int, in_features: int, a_init: str = "kaiming",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The A (rank × in_features) of ``module`` for adapter ``seed``; drawn on CPU in float32."""
    gen = torch.Generator(device="cpu").manual_seed(module_seed(seed, module))
    if a_init == "kaiming":
        bound = 1.0 / math.sqrt(in_features)
        A = torch.rand(rank, in_features, generator=gen, dtype=torch.float32) * (2 * bound) - bound
    elif a_init == "gaussian":
        A = torch.randn(rank, in_features, generator=gen, dtype=torch.float32) / math.sqrt(rank)
    else:
        raise UsageError(f"--a-init {a_init!r}: unknown (choose from {', '.join(A_INITS)})")
    return A.to(dtype)
