"""Score tables: single-adapter vs merged scores per task, and retention.

The builder takes ``{(row, task): score}`` where a row is a single adapter or a merge. With
``single_of = {task: row of the adapter trained on it}``, retention of a merged row on task t is

    retention(merge, t) = score(merge, t) / score(single_of[t], t)

and the row's average retention is the mean over the tasks it was scored on.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LorikitError


@dataclass
class ScoreTable:
    rows: list[str]
    tasks: list[str]
    scores: np.ndarray  # [rows, tasks], NaN where not scored
    retention: np.ndarray | None = None  # [rows, tasks] score / single score, when single_of given

    def average_retention(self) -> list[float]:
        if self.retention is None:
            return []
        out = []
        for r in self.retention:
            vals = r[~np.isnan(r)]
            out.append(float(vals.mean()) if vals.size else math.nan)
        return out

    def markdown(self, digits: int = 3) -> str:
        def fmt(x):
            return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"
        head = ["", *self.tasks] + (["avg retention"] if self.retention is not None else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        avg = self.average_retention()
        for i, row in enumerate(self.rows):
            cells = [fmt(float(x)) for x in self.scores[i]]
            if self.retention is not None:
                cells = [c if math.isnan(r) else f"{c} ({r:.0%})" for c, r in zip(cells, self.retention[i])]
                cells.append("–" if math.isnan(avg[i]) else f"{avg[i]:.0%}")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        def clean(a):
            return [[None if math.isnan(x) else float(x) for x in row] for row in a]
        out = {"rows": self.rows, "tasks": self.tasks, "scores": clean(self.scores)}
        if self.retention is not None:
            out["retention"] = clean(self.retention)
            out["average_retention"] = [None if math.isnan(x) else x for x in self.average_retention()]
        return out


def score_table(scores: dict[tuple[str, str], float], single_of: dict[str, str] | None = None) -> ScoreTable:
    """Rows and task columns in first-seen order; retention for rows other than the singles."""
    if not scores:
        raise LorikitError("score table: no scores given")
    rows = list(dict.fromkeys(r for r, _ in scores))
    tasks = list(dict.fromkeys(t for _, t in scores))
    mat = np.full((len(rows), len(tasks)), np.nan)
    for (r, t), v in scores.items():
        mat[rows.index(r), tasks.index(t)] = float(v)
    retention = None
    if single_of:
        unknown = [t for t in single_of if t not in tasks]
        if unknown:
            raise LorikitError(f"score table: single_of names task {unknown[0]!r}, which has no scores")
        retention = np.full_like(mat, np.nan)
        singles = set(single_of.values())
        for t, ref_row in single_of.items():
            if (ref_row, t) not in scores:
                raise LorikitError(f"score table: no score of {ref_row!r} on its own task {t!r}")
            ref = scores[(ref_row, t)]
            for i, r in enumerate(rows):
                if r not in singles and not math.isnan(mat[i, tasks.index(t)]) and ref:
                    retention[i, tasks.index(t)] = mat[i, tasks.index(t)] / ref
    return ScoreTable(rows, tasks, mat, retention)


def load_scores(path: str | os.PathLike) -> dict[tuple[str, str], float]:
    """Scores from JSON: ``[{"adapter", "task", "score"}, ...]`` (or under a "scores" key), or
    ``{adapter: {task: score}}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LorikitError(f"{path}: unreadable score file ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("scores"), list):
        data = data["scores"]
    out: dict[tuple[str, str], float] = {}
    if isinstance(data, list):
        for n, rec in enumerate(data):
            if not isinstance(rec, dict) or not {"adapter", "task", "score"} <= set(rec):
                raise LorikitError(f"{path}: record {n} needs keys adapter, task, score")
            out[(str(rec["adapter"]), str(rec["task"]))] = float(rec["score"])
    elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        for adapter, per_task in data.items():
            for task, score in per_task.items():
                if not isinstance(score, (int, float)):
                    raise LorikitError(f"{path}: score of {adapter}/{task} is not a number")
                out[(adapter, task)] = float(score)
    else:
        raise LorikitError(f"{path}: expected a list of {{adapter, task, score}} or {{adapter: {{task: score}}}}")
    return out
