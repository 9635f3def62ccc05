"""Overlap of LoRI-S masks: which entries of B two tasks train.

A mask file (reference format, docs/methods.md#masks; read with ``adapters.masks.load_mask``) is a ``torch.save``d dict mapping the PEFT name of
each B, e.g. ``base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight`` (the
``.default`` segment optional), to a bool tensor of B's shape [out, r], True = kept. Per module and
over all modules (entries pooled):

    J(M1, M2) = |M1 ∧ M2| / |M1 ∨ M2|        (1 for identical masks, 0 for disjoint; NaN if both empty)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..adapters.masks import load_mask
from ..errors import LorikitError


def jaccard(m1: torch.Tensor, m2: torch.Tensor) -> float:
    """|m1 ∧ m2| / |m1 ∨ m2| of two bool tensors of one shape."""
    union = int((m1 | m2).sum())
    return int((m1 & m2).sum()) / union if union else math.nan


@dataclass
class MaskOverlap:
    names: list[str]
    modules: list[str]
    per_module: np.ndarray  # [n, n, M]
    overall: np.ndarray  # [n, n], entries pooled over modules
    density: list[float]  # kept fraction of each mask

    def to_json(self) -> dict:
        def clean(a):
            return [[None if math.isnan(x) else round(float(x), 6) for x in row] for row in a]
        return {"masks": self.names, "density": [round(d, 6) for d in self.density],
                "overall_jaccard": clean(self.overall),
                "per_module": {m: clean(self.per_module[:, :, k]) for k, m in enumerate(self.modules)}}


__all__ = ["MaskOverlap", "jaccard", "load_mask", "mask_overlap"]


def mask_overlap(masks: dict[str, dict[str, torch.Tensor]]) -> MaskOverlap:
    """Pairwise Jaccard of masks ``{name: {module: bool [out, r]}}``, per module and pooled."""
    names = list(masks)
    if not names:
        raise LorikitError("mask_overlap: no masks given")
    modules = list(masks[names[0]])
    for other in names[1:]:
        diff = [m for m in modules if m not in masks[other]] or [m for m in masks[other] if m not in modules]
        if diff:
            raise LorikitError(f"masks {names[0]} and {other} cover different modules (first mismatch: {diff[0]})")
        for m in modules:
            if masks[other][m].shape != masks[names[0]][m].shape:
                raise LorikitError(f"masks {names[0]} and {other}: module {m} has shape "
                                   f"{tuple(masks[names[0]][m].shape)} vs {tuple(masks[other][m].shape)}")
    n, M = len(names), len(modules)
    per = np.full((n, n, M), np.nan)
    inter = np.zeros((n, n))
    union = np.zeros((n, n))
    for k, m in enumerate(modules):
        for i in range(n):
            for j in range(i, n):
                a, b = masks[names[i]][m], masks[names[j]][m]
                per[i, j, k] = per[j, i, k] = jaccard(a, b)
                inter[i, j] += int((a & b).sum())
                union[i, j] += int((a | b).sum())
                inter[j, i], union[j, i] = inter[i, j], union[i, j]
    overall = np.full((n, n), np.nan)
    np.divide(inter, union, out=overall, where=union > 0)
    total = sum(masks[names[0]][m].numel() for m in modules)
    density = [sum(int(masks[a][m].sum()) for m in modules) / total for a in names]
    return MaskOverlap(names, modules, per, overall, density)
