"""Pairwise comparison of adapters, per module and overall: subspace overlap and ΔW cosine.

For adapters i, j and every shared target module m:
    row[i, j, m] = overlap of range(ΔW_iᵀ), range(ΔW_jᵀ)   (input directions each adapter reads)
    col[i, j, m] = overlap of range(ΔW_i), range(ΔW_j)     (output directions each adapter writes)
    cosine[i, j, m] = cos(vec ΔW_i, vec ΔW_j)
(formulas in ``subspace`` and ``cosine``). Overall overlap = mean over modules (NaN-ignoring);
overall cosine = cosine of the concatenation of every module's ΔW.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..adapters.state import AdapterState
from ..errors import LorikitError
from .cosine import cosine_from_sums, delta_inner, delta_norm_sq
from .subspace import DEFAULT_TOL, delta_bases, overlap

PROJECTION_ORDER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.")


def module_layer(module: str) -> int | None:
    """The transformer block index in a module path (``model.layers.3.mlp.up_proj`` → 3)."""
    m = _LAYER.search(module)
    return int(m.group(1)) if m else None


def module_kind(module: str) -> str:
    """The projection name (last path segment): ``q_proj``, ``down_proj``, ..."""
    return module.rsplit(".", 1)[-1]


def shared_modules(states: dict[str, AdapterState]) -> list[str]:
    """Target modules common to all adapters, in the first adapter's order; shapes must agree."""
    names = list(states)
    first = states[names[0]].modules()
    for other in names[1:]:
        mods = states[other].modules()
        missing = [m for m in first if m not in mods] or [m for m in mods if m not in first]
        if missing:
            raise LorikitError(f"adapters {names[0]} and {other} target different modules "
                               f"(first mismatch: {missing[0]})")
        for m, lm in first.items():
            o = mods[m]
            if lm.B.shape[0] != o.B.shape[0] or lm.A.shape[1] != o.A.shape[1]:
                raise LorikitError(f"adapters {names[0]} and {other}: module {m} has ΔW "
                                   f"{lm.B.shape[0]}×{lm.A.shape[1]} vs {o.B.shape[0]}×{o.A.shape[1]}")
    return list(first)


@dataclass
class PairwiseComparison:
    names: list[str]  # adapters, in order
    modules: list[str]  # shared target modules
    row: np.ndarray  # [n, n, M] row-space overlap
    col: np.ndarray  # [n, n, M] column-space overlap
    cosine: np.ndarray  # [n, n, M] per-module ΔW cosine
    overall_cosine: np.ndarray  # [n, n] cosine of the whole flattened update
    ranks: np.ndarray  # [n, M] numerical rank of each ΔW

    @property
    def overall_row(self) -> np.ndarray:
        return _nanmean_last(self.row)

    @property
    def overall_col(self) -> np.ndarray:
        return _nanmean_last(self.col)

    def by_layer(self, values: np.ndarray, i: int, j: int) -> tuple[list[int | None], list[str], np.ndarray]:
        """(layers, projection kinds, [layers × kinds] grid) of one pair's per-module values."""
        layers = sorted({module_layer(m) for m in self.modules}, key=lambda x: -1 if x is None else x)
        kinds = sorted(dict.fromkeys(module_kind(m) for m in self.modules),
                       key=lambda k: (PROJECTION_ORDER.index(k) if k in PROJECTION_ORDER else len(PROJECTION_ORDER), k))
        grid = np.full((len(layers), len(kinds)), np.nan)
        for k, m in enumerate(self.modules):
            grid[layers.index(module_layer(m)), kinds.index(module_kind(m))] = values[i, j, k]
        return layers, kinds, grid

    def to_json(self) -> dict:
        def clean(a):
            return [[None if math.isnan(x) else round(float(x), 6) for x in row] for row in a]
        return {"adapters": self.names, "overall": {"row_overlap": clean(self.overall_row),
                                                    "col_overlap": clean(self.overall_col),
                                                    "cosine": clean(self.overall_cosine)},
                "per_module": {m: {"row_overlap": clean(self.row[:, :, k]), "col_overlap": clean(self.col[:, :, k]),
                                   "cosine": clean(self.cosine[:, :, k]), "rank": [int(r) for r in self.ranks[:, k]]}
                               for k, m in enumerate(self.modules)}}


def _nanmean_last(a: np.ndarray) -> np.ndarray:
    out = np.full(a.shape[:-1], np.nan)
    valid = ~np.isnan(a)
    counts = valid.sum(-1)
    sums = np.where(valid, a, 0.0).sum(-1)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def compare_adapters(states: dict[str, AdapterState], tol: float = DEFAULT_TOL,
                     top_k: int | None = None) -> PairwiseComparison:
    """Overlap (row and column space) and cosine of every pair of adapters, per shared module."""
    if not states:
        raise LorikitError("compare_adapters: no adapters given")
    names = list(states)
    modules = shared_modules(states)
    n, M = len(names), len(modules)
    row = np.full((n, n, M), np.nan)
    col = np.full((n, n, M), np.nan)
    cos = np.full((n, n, M), np.nan)
    inner_total = np.zeros((n, n))
    ranks = np.zeros((n, M), dtype=int)
    for k, m in enumerate(modules):
        mods = [states[a].modules()[m] for a in names]
        bases = [delta_bases(x, tol, top_k) for x in mods]
        norms = [delta_norm_sq(x) for x in mods]
        for i in range(n):
            ranks[i, k] = bases[i].rank
            for j in range(i, n):
                inner = norms[i] if i == j else delta_inner(mods[i], mods[j])
                inner_total[i, j] += inner
                inner_total[j, i] = inner_total[i, j]
                row[i, j, k] = row[j, i, k] = overlap(bases[i].row, bases[j].row)
                col[i, j, k] = col[j, i, k] = overlap(bases[i].col, bases[j].col)
                cos[i, j, k] = cos[j, i, k] = cosine_from_sums(inner, norms[i], norms[j])
    overall_cos = np.array([[cosine_from_sums(inner_total[i, j], inner_total[i, i], inner_total[j, j])
                             for j in range(n)] for i in range(n)])
    return PairwiseComparison(names, modules, row, col, cos, overall_cos, ranks)
