"""Resuming a study from its committed outcomes (``lorikit study --resume-from OUTCOMES.json.gz``).

A study's workdir holds adapters and stage records; what its table reads is only the per-item
outcomes of its evaluations and the early-stopping record of its trainings, and those are what
``bench/bench_study.py --progress`` (or a finished table's ``outcomes.json.gz``) commits. On a
machine without the workdir, the stages the table would read from such a file are **settled**: not
run. A stage still runs where something the file lacks needs it: every eval the file does not hold,
and each of its ancestors (the trainings, masks and merges it is computed from), so a method's
seed that stopped part-way is trained again whole. The table reads each stage from the workdir
where it ran here, else from the file.

Why: a long study outlives the machine it started on; the outcomes are small enough to commit, the
adapters are not.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..pipeline.recipe import Recipe

TABLE = "table"


def archived_stages(path: str | Path) -> set[str]:
    """The stage names whose results the outcomes file holds (evals and trainings)."""
    from ..analysis.study.outcomes import load
    from ..errors import LorikitError

    try:
        data = load(path).data
    except LorikitError as exc:
        raise UsageError(f"--resume-from {exc}") from None  # the message starts with the path
    return set(data["evals"]) | set(data["trainings"])


def needed_stages(recipe: Recipe, archived: set[str]) -> list[str]:
    """The stages to run (recipe order, the table aside): each stage the table reads that ``archived``
    lacks, and every ancestor of one."""
    needed: set[str] = set()
    todo = [p for p in recipe.stages[TABLE].parents if p not in archived]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(recipe.stages[name].parents)
    return [n for n in recipe.order() if n in needed]


def settled_stages(recipe: Recipe, archived: set[str]) -> set[str]:
    """The table's inputs taken from the outcomes file: those it holds that nothing left to run needs."""
    needed = set(needed_stages(recipe, archived))
    return {p for p in recipe.stages[TABLE].parents if p in archived and p not in needed}
