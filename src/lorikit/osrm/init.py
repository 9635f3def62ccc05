"""OSRM's analytical A: the input directions the *other* tasks do not use (docs/methods.md#osrm).

For task t and a target module, let the other tasks k ≠ t have statistics μ_k (mean input over
real tokens) and M_k = Σ_tokens h hᵀ. A (r × d, rows orthonormal: A Aᵀ = I) minimises
‖A H_{¬t}ᵀ‖², so that after merging, B_t A_t h ≈ 0 on the other tasks' inputs:

- ``mean`` (the official code): H_{¬t} = [μ_k]_{k≠t} stacked ((N−1) × d); A = the r right-singular
  vectors of H_{¬t} with the smallest singular values. H has rank ≤ N−1, so these span part of
  its exact null space (A μ_k = 0), which has dimension d − rank(H); r must fit in it.
- ``cov`` (the paper): C = Σ_{k≠t} M_k; A = the r eigenvectors of C with the smallest eigenvalues
  (r ≤ d). This minimises Σ_{k≠t} Σ_tokens ‖A h‖² over all orthonormal A.

Scale: the rows come out unit-norm (the reference). PEFT's default LoRA A is kaiming-uniform
U(±1/√d), rows of expected norm 1/√3; a Gaussian N(0, 1/r) A has rows of norm √(d/r). Since
ΔW = s B A, the size of A sets how fast B's updates move ΔW (the effective learning rate), so
``scale`` multiplies the orthonormal rows: a number, ``unit`` (1, default), ``kaiming`` (1/√3) or
``gaussian`` (√(d/r)). B = 0, so ΔW = 0 at the start whatever the scale.
"""

from __future__ import annotations

import torch

from ..adapters.build import lora_layers
from ..errors import UsageError
from .config import MODES, NAMED_SCALES, OsrmInitConfig, check_scale, parse_scale  # noqa: F401 (public here too)
from .reader import OsrmStats

def other_tasks(stats: OsrmStats, task: str) -> list[str]:
    stats.check_task(task)
    others = [k for k in stats.tasks if k != task]
    if not others:
        raise UsageError(f"--osrm-stats {stats.folder}: only task {task!r} recorded; OSRM needs the "
                         "statistics of at least one other task")
    return others


def mean_basis(means: torch.Tensor, rank: int, module: str = "") -> torch.Tensor:
    """r orthonormal rows spanning directions of least (here: zero) response to the stacked means."""
    means = means.to(torch.float64)
    d = means.shape[1]
    _, S, Vh = torch.linalg.svd(means, full_matrices=True)
    tol = S.max().item() * max(means.shape) * torch.finfo(torch.float64).eps if S.numel() else 0.0
    null_dim = d - int((S > tol).sum())
    if rank > null_dim:
        raise UsageError(f"rank {rank} > null space of the other tasks' means at {module or 'this module'}: "
                         f"d = {d}, {means.shape[0]} mean(s) of rank {d - null_dim}, null space {null_dim}")
    return Vh[d - rank:].contiguous()  # right-singular vectors of the smallest singular values


def cov_basis(second_moment: torch.Tensor, rank: int, module: str = "") -> torch.Tensor:
    """r orthonormal rows: eigenvectors of C with the smallest eigenvalues."""
    C = second_moment.to(torch.float64)
    d = C.shape[0]
    if rank > d:
        raise UsageError(f"rank {rank} > input dimension {d} at {module or 'this module'} "
                         "(cov mode has only d eigenvectors)")
    _, V = torch.linalg.eigh(0.5 * (C + C.T))  # ascending eigenvalues
    return V[:, :rank].T.contiguous()


def osrm_projection(stats: OsrmStats, task: str, module: str, rank: int, mode: str = "mean") -> torch.Tensor:
    """A_osrm (r × d, float64, orthonormal rows) of ``module`` for ``task``."""
    if mode not in MODES:
        raise UsageError(f"--osrm-mode {mode!r}: unknown (choose from {', '.join(MODES)})")
    others = other_tasks(stats, task)
    if mode == "mean":
        return mean_basis(torch.stack([stats.mean(k, module) for k in others]), rank, module)
    C = sum(stats.second_moment(k, module) for k in others)
    return cov_basis(C, rank, module)


def apply_osrm_init(peft_model, stats_dir, task: str, mode: str = "mean", scale: str | float = "unit",
                    base_model_id: str | None = None, adapter_name: str = "default") -> dict:
    """Set every LoRA A of ``peft_model`` to its OSRM projection (× scale) and B to 0.

    ``stats_dir``: a statistics folder, or any object with ``OsrmStats``'s reading interface
    (``lorikit.integrations.osrm.MemoryStats``). Returns the record written into lorikit.json
    under ``init``.
    """
    stats = stats_dir if hasattr(stats_dir, "second_moment") else OsrmStats(stats_dir)
    stats.check_model(base_model_id)
    other_tasks(stats, task)
    layers = list(lora_layers(peft_model, adapter_name))
    factors = set()
    for name, layer in layers:
        A = layer.lora_A[adapter_name].weight
        B = layer.lora_B[adapter_name].weight
        rank, d = A.shape
        basis = osrm_projection(stats, task, name, rank, mode)
        if basis.shape[1] != d:
            raise UsageError(f"--osrm-stats {stats.folder}: module {name} has input size {basis.shape[1]} "
                             f"in the statistics, {d} in the model")
        factor = parse_scale(scale, d, rank)
        factors.add(round(factor, 6))
        with torch.no_grad():
            A.copy_((factor * basis).to(A.dtype))
            B.zero_()
    return {"kind": "osrm", "stats": str(stats.folder), "stats_model": stats.model, "task": task,
            "other_tasks": [k for k in stats.tasks if k != task], "mode": mode, "scale": str(scale),
            "row_norms": sorted(factors), "modules": len(layers)}
