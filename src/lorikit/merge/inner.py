"""Running one merge method inside another's space (the ``inner`` of KnOTS and Core Space).

The outer method turns each task's update into a same-shaped matrix in a small shared space
(KnOTS: Σ V_tᵀ; Core Space: the core M_t) and lets any merge method combine those matrices:
an entrywise (``delta``) method directly, or a ``factor`` method with each matrix given as the
factor pair B = I, A = M_t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..adapters.state import LoraModule
from .registry import DeltaParams, Param, get_method, methods


def inner_methods() -> tuple[str, ...]:
    """Methods usable as ``inner``: the entrywise ones and the factor ones that are not themselves nested."""
    return tuple(n for n, m in methods().items() if m.kind.serves_inner and not m.inner)


INNER = Param("inner", str, "task-arithmetic", "method that merges in the inner space of knots / core-space "
              "(with its own options); knots defaults to ties (KnOTS-TIES, the paper's method)", choices=inner_methods)


def run_inner(matrices: list[torch.Tensor], weights: list[float], params: DeltaParams) -> torch.Tensor:
    """``params.inner`` applied to same-shaped matrices with the per-task ``weights`` (in their dtype)."""
    import torch

    # resolved once with the merge's parameters; a DeltaParams built by hand names it only
    inner = params.inner_method or get_method(params.inner)
    if inner.kind.entrywise:
        return inner.fn(matrices, torch.tensor(weights, dtype=matrices[0].dtype), params)
    eye = torch.eye(matrices[0].shape[0], dtype=matrices[0].dtype)  # M = I · M: factors of size k, not in
    result = inner.fn([LoraModule(params.module, m, eye, 1.0) for m in matrices], weights, params)
    return result.scaling * result.B.double() @ result.A.double()
