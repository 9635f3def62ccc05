"""Merge-weight sweeps: a merged adapter's score as a function of its merge weight.

A sweep maps each series (e.g. ``"lori-d cat: arithmetic"``) to points ``{weight: score}``; the
report draws one line per series (``sweep.png``). A score is a number or the output of an eval: an
eval folder holding ``result.json`` or that file itself, whose ``score`` is read. In a recipe the
points are ``$eval-stage`` references, so the sweep is assembled from the evals that ran::

    sweep:
      "cat, arithmetic": {0.3: $eval-cat-0.3-arithmetic, 0.5: $eval-cat-0.5-arithmetic}

From the command line the same mapping is a JSON file (``--sweep sweep.json``; weights as keys).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import LorikitError
from ..eval.result import read_score


def _score_of(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LorikitError(f"{where}: {value!r} is not a score or an eval output")
    score = read_score(value, where) if isinstance(value, str) else float(value)
    if not math.isfinite(score):
        raise LorikitError(f"{where}: score {score} is not finite")
    return score


def load_sweep(spec: str | os.PathLike | dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """``{series: {weight: score | eval output}}`` (or a JSON file of it) → ``{series: [(w, score)]}``
    sorted by weight."""
    source = "sweep"
    if not isinstance(spec, dict):
        source = f"--sweep {spec}"
        try:
            spec = json.loads(Path(spec).read_text())
        except FileNotFoundError:
            raise LorikitError(f"{source}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LorikitError(f"{source}: not a JSON sweep ({e})") from None
    if not isinstance(spec, dict) or not spec:
        raise LorikitError(f"{source}: expected a non-empty mapping {{series: {{weight: score}}}}")
    out: dict[str, list[tuple[float, float]]] = {}
    for series, points in spec.items():
        if not isinstance(points, dict) or not points:
            raise LorikitError(f"{source}: series {series!r}: expected a non-empty mapping {{weight: score}}")
        pairs = []
        for weight, value in points.items():
            where = f"{source}: series {series!r}, weight {weight!r}"
            try:
                w = float(weight)
            except (TypeError, ValueError):
                raise LorikitError(f"{where}: the weight is not a number") from None
            if not math.isfinite(w):
                raise LorikitError(f"{where}: the weight is not finite")
            if any(w == seen for seen, _ in pairs):
                raise LorikitError(f"{where}: weight {w:g} given twice")
            pairs.append((w, _score_of(value, where)))
        out[str(series)] = sorted(pairs)
    return out
