"""``kind: scores`` — collect eval results into the single-vs-merged table.

Settings: ``methods``: {METHOD: {single: {TASK: $eval-stage}, merged: {TASK: $eval-stage}}}.
Retention of a method on task t = merged score / single score (1.0 = merging cost nothing).
``labels`` (default ``[single, merged]``) renames the two columns, e.g. ``[before, after]`` for
continual learning, where retention = after / before measures forgetting of the first task.
Output: ``scores.json`` (records ``{adapter: "METHOD single|merged", task, score}`` that
``lorikit analyze --scores`` reads, plus the per-method table) and ``table.md``.
"""

from __future__ import annotations

import logging
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...eval.result import read_score
from ...utils.atomic import atomic_output_dir
from .base import StageKind, build_dataclass

log = logging.getLogger(__name__)


@dataclass
class ScoresSettings:
    methods: dict = field(default_factory=dict)
    labels: list[str] = field(default_factory=lambda: ["single", "merged"])


def method_table(methods: dict[str, dict[str, dict[str, float]]],
                 labels: tuple[str, str] = ("single", "merged")) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: method, then per task single / merged, then average retention."""
    first, second = labels
    tasks = list(dict.fromkeys(t for m in methods.values() for t in m[first]))
    header = ["method"] + [f"{t} {kind}" for t in tasks for kind in labels] + ["avg retention"]
    rows = []
    for name, m in methods.items():
        row: list[Any] = [name]
        ratios = []
        for t in tasks:
            s, g = m[first].get(t, math.nan), m[second].get(t, math.nan)
            row += [s, g]
            if s and not math.isnan(s) and not math.isnan(g):
                ratios.append(g / s)
        row.append(sum(ratios) / len(ratios) if ratios else math.nan)
        rows.append(row)
    return header, rows


def format_table(header: list[str], rows: list[list[Any]], markdown: bool = False) -> str:
    cells = [[c if isinstance(c, str) else ("n/a" if math.isnan(c) else f"{c:.3f}") for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells]) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells]) + "\n"


class ScoresKind(StageKind):
    name = "scores"
    summary = "collect eval results into a single-vs-merged table with retention"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        where = f"stage {stage!r} (scores)"
        cfg = build_dataclass(ScoresSettings, settings, where)
        if not cfg.methods:
            raise UsageError(f"{where}: 'methods' is required")
        if len(cfg.labels) != 2 or len(set(cfg.labels)) != 2:
            raise UsageError(f"{where}: 'labels' must be two different column names (got {cfg.labels})")
        first, second = cfg.labels
        for method, body in cfg.methods.items():
            if not isinstance(body, dict) or set(body) != set(cfg.labels) or \
                    not all(isinstance(v, dict) for v in body.values()):
                raise UsageError(f"{where}: method {method!r} needs {first!r} and {second!r} mappings of task → $eval-stage")
        return cfg

    def run(self, prepared: ScoresSettings, out: Path) -> None:
        labels = tuple(prepared.labels)
        methods = {m: {k: {t: read_score(f, f"method {m!r}, {k} {t!r}") for t, f in body[k].items()} for k in labels}
                   for m, body in prepared.methods.items()}
        header, rows = method_table(methods, labels)
        records = [{"adapter": f"{m} {k}", "task": t, "score": s}
                   for m, body in methods.items() for k in labels for t, s in body[k].items()]
        with atomic_output_dir(out, overwrite=True) as tmp:
            (tmp / "scores.json").write_text(json.dumps({"scores": records, "methods": methods}, indent=2) + "\n")
            (tmp / "table.md").write_text(format_table(header, rows, markdown=True))
        log.info("scores:\n%s", format_table(header, rows))

    def complete(self, out: Path) -> bool:
        return (out / "scores.json").is_file()


KIND = ScoresKind()
