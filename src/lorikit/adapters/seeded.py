"""Seeded LoRI projections: A is a deterministic function of (adapter seed, module name).

The reference draws A from system entropy, so runs cannot be reproduced (LoRI issues #8, #10).
Here each module's generator is seeded with ``sha256(f"{seed}:{module}")``, so A can be
regenerated from the seed alone (compact storage, LoRI-S reusing LoRI-D's A) and is independent
of module order, device and sharding.

The draw itself is the seeded initialisation's (``adapters/inits/``: ``kaiming``, ``gaussian``).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .inits import get_seeded_init, seeded_init_names
from .layers import lora_layers

if TYPE_CHECKING:
    import torch

A_INITS = seeded_init_names()  # the seeded inits, for --a-init


def module_seed(seed: int, module: str) -> int:
    """A 63-bit generator seed derived from the adapter seed and the module path."""
    digest = hashlib.sha256(f"{int(seed)}:{module}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_projection(seed: int, module: str, rank: int, in_features: int, a_init: str = "kaiming",
                      dtype: torch.dtype | None = None) -> torch.Tensor:
    """The A (rank × in_features) of ``module`` for adapter ``seed``; drawn on CPU in float32
    (returned in ``dtype`` when given)."""
    import torch  # when drawn: listing the inits and methods (--help) stays torch-free

    gen = torch.Generator(device="cpu").manual_seed(module_seed(seed, module))
    A = get_seeded_init(a_init).draw(gen, rank, in_features)
    return A if dtype is None else A.to(dtype)


def freeze_seeded_a(peft_model, seed: int, a_init: str, adapter_name: str = "default") -> None:
    """Replace every A of ``adapter_name`` by its seeded projection and freeze it (LoRI's A)."""
    import torch

    for name, layer in lora_layers(peft_model, adapter_name):
        weight = layer.lora_A[adapter_name].weight
        A = seeded_projection(seed, name, weight.shape[0], weight.shape[1], a_init)
        with torch.no_grad():
            weight.copy_(A.to(weight.dtype))
        weight.requires_grad_(False)
