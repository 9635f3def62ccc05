"""A LoRI-S mask's sparsity: its check, the count of kept entries and the reference file name.
Torch-free, so ``lorikit params`` and the method registry load without it."""

from __future__ import annotations

from ..errors import UsageError


def check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 < s < 1.0:
        raise UsageError(f"--sparsity {sparsity}: must be strictly between 0 and 1 (fraction of B zeroed)")
    return s


def kept_count(sparsity: float, total: int) -> int:
    """The rounding rule of the reference: k = int((1 − sparsity) · N) (truncation)."""
    return int((1.0 - check_sparsity(sparsity)) * total)


def mask_filename(sparsity: float) -> str:
    return f"{check_sparsity(sparsity)}_mask.pt"
