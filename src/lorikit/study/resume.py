"""Resuming a study from its committed outcomes (``lorikit study --resume-from OUTCOMES.json.gz``).

A study's workdir holds adapters and stage records; what its table reads is only the per-item
outcomes of its evaluations and the early-stopping record of its trainings, and those are what
``bench/bench_study.py --progress`` commits, with each result's stage hash. On a
machine without the workdir, the stages the table would read from such a file are **settled**: not
run. A stage still runs where something the file lacks needs it: every eval the file does not hold,
and each of its ancestors (the trainings, masks and merges it is computed from); a method's seed
that stopped part-way runs again whole, its results in the file included (``settled_results``), so
that every run is computed on one machine. The table reads each stage from the workdir
where it ran here, else from the file. A result is taken only when the stage hash the file records
for it equals the one this study's recipe gives it now (the settings, every ancestor's and the
stage kind's version), so a changed study file never mixes its results with the old ones.

Why: a long study outlives the machine it started on; the outcomes are small enough to commit, the
adapters are not.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UsageError
from ..pipeline.recipe import Recipe

TABLE = "table"
logger = logging.getLogger(__name__)


def archived_stages(path: str | Path, recipe: Recipe) -> set[str]:
    """The stage names whose results the outcomes file holds (evals and trainings) for ``recipe`` as it is
    now: each one's recorded stage hash must equal the recipe's, so a result made with other settings, an
    ancestor's included, or by another version of its stage kind is never taken for this study's."""
    from ..analysis.study.outcomes import load
    from ..errors import LorikitError
    from ..pipeline.runner import plan_recipe

    try:
        data = load(path).data
    except LorikitError as exc:
        raise UsageError(f"--resume-from {exc}") from None  # the message starts with the path
    recorded = data.get("stage_hashes")
    if not recorded:
        raise UsageError(f"--resume-from {path}: records no stage hashes, so its results cannot be matched to this "
                         "study's settings (collect it with bench/bench_study.py --progress)")
    plans = {p.name: p for p in plan_recipe(recipe, resume=True)}
    held = set(data["evals"]) | set(data["trainings"])
    matched = {n for n in held if n in plans and recorded.get(n) == plans[n].hash}
    # a folder of that name here from other settings would be what the table reads: run the stage again over it
    stale = {n for n in matched if plans[n].status == "stale"}
    if stale:
        logger.warning("--resume-from %s: %d stages it holds have an out-of-date folder in %s and run again: %s",
                       path, len(stale), recipe.workdir, ", ".join(sorted(stale)[:5]))
        matched -= stale
    other = sorted(held - matched - stale)
    if other:
        logger.warning("--resume-from %s: %d of its %d results were made with other settings (or by another "
                       "version of their stage; the hashes differ) and are not taken: %s%s", path, len(other),
                       len(held), ", ".join(other[:5]), " ..." if len(other) > 5 else "")
    return matched


def settled_results(cfg, recipe: Recipe) -> set[str]:
    """What ``cfg.resume_from`` settles for the study ``cfg``: ``archived_stages``, by whole groups — a
    method's seed (its trainings, masks, merges, evaluations) is taken from the file only if every result
    of it is there; otherwise the whole group runs again here. Each run is then computed on one machine:
    kernels of other CPUs round differently, so an adapter trained again elsewhere need not be the same
    adapter, and a run's single and merged scores must come from the same adapters."""
    from .workers import shared_stages, stage_groups, stages_by_seed

    archived = archived_stages(cfg.resume_from, recipe)
    reads = set(recipe.stages[TABLE].parents)
    split = []
    for group in stage_groups(recipe, shared_stages(stages_by_seed(cfg)) | {TABLE}):
        results = [n for n in group if n in reads]
        if any(n in archived for n in results) and not all(n in archived for n in results):
            split.append(group)
    if split:
        logger.warning("--resume-from %s: %d groups of stages stopped part-way there and run again whole here "
                       "(their results in the file are compared, not used): %s", cfg.resume_from, len(split),
                       ", ".join(g[0] for g in split[:5]))
    return archived - {n for group in split for n in group}


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


def settled_stages(recipe: Recipe, archived: set[str], needed: list[str]) -> set[str]:
    """The table's inputs taken from the outcomes file: those it holds that nothing left to run
    (``needed``: ``needed_stages(recipe, archived)``) needs."""
    left = set(needed)
    return {p for p in recipe.stages[TABLE].parents if p in archived and p not in left}
