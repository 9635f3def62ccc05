"""Merge methods by name (mergekit style): each method file registers itself with ``@register``.

A method is one of three kinds:
- ``adapter``: combines the LoRA factors directly (``cat``, ``linear``); signature
  ``fn(modules: list[LoraModule], weights: list[float]) -> LoraModule``.
- ``delta``: combines full per-module updates ΔW_i = s_i B_i A_i in float32 (task arithmetic, TIES,
  DARE, magnitude prune); signature ``fn(deltas: list[Tensor], weights: Tensor, params: DeltaParams)
  -> Tensor``.
- ``emr``: EMR-Merging, which yields a shared update plus per-task masks and rescalers (emr.py).

``uses`` lists the hyper-parameters a method reads, so a setting it would silently ignore
(``--density`` for ``cat``) is refused instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import UsageError

KINDS = ("adapter", "delta", "emr")
PARAMS = ("lam", "density", "drop_rate", "seed")
_BUILTIN = ("cat", "linear", "task_arithmetic", "ties", "dare", "magnitude_prune", "emr")


@dataclass(frozen=True)
class DeltaParams:
    """Hyper-parameters of the delta-space methods (each method reads only those in its ``uses``)."""

    lam: float = 1.0  # λ, the final scale of the merged update
    density: float = 0.2  # fraction of entries each task keeps (TIES, magnitude prune)
    drop_rate: float = 0.9  # DARE's drop probability p
    seed: int = 0  # DARE's random drop
    module: str = ""  # module path: DARE derives its per-module generator from it

    def generator(self, task_index: int) -> torch.Generator:
        """The generator of task ``task_index`` in this module: a function of (seed, module, task)."""
        from ..adapters.seeded import module_seed

        return torch.Generator(device="cpu").manual_seed(module_seed(self.seed, f"dare:{task_index}:{self.module}"))


@dataclass(frozen=True)
class MergeMethod:
    name: str
    kind: str
    fn: Callable
    uses: tuple[str, ...]
    summary: str


_METHODS: dict[str, MergeMethod] = {}


def register(name: str, kind: str, uses: tuple[str, ...] = (), summary: str = ""):
    """Decorator adding ``fn`` to the registry as method ``name``."""
    if kind not in KINDS:
        raise ValueError(f"merge method {name}: kind {kind!r} not in {KINDS}")
    unknown = set(uses) - set(PARAMS)
    if unknown:
        raise ValueError(f"merge method {name}: unknown parameter(s) {sorted(unknown)}")

    def wrap(fn: Callable) -> Callable:
        _METHODS[name] = MergeMethod(name, kind, fn, tuple(uses), summary or (fn.__doc__ or "").split("\n")[0])
        return fn

    return wrap


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"{__package__}.{module}")


def methods() -> dict[str, MergeMethod]:
    """All registered methods, by name."""
    _load_builtin()
    return dict(_METHODS)


def get_method(name: str) -> MergeMethod:
    table = methods()
    if name not in table:
        raise UsageError(f"--method {name!r}: unknown merge method (choose from {', '.join(table)})")
    return table[name]


METHOD_NAMES = ("cat", "linear", "task-arithmetic", "ties", "dare-linear", "dare-ties", "magnitude-prune", "emr")
