"""Checks to read before trusting an accuracy: single adapters that give one answer to (almost) every item.

On a task whose gold answers come from a few labels (true / false, A / B), an adapter that learned
only the label prior — "true" to everything — scores the majority rate and looks like a partly
learned task. Merging or continual training that moves such an adapter's score measures a shift of
that prior, not of a skill. The study flags every single adapter (w = 1) whose most frequent answer
covers at least ``ONE_ANSWER_SHARE`` of the items while the gold answers take at least two values,
and prints the share of items on which that answer is right (the accuracy it explains).

And which runs learned each task at all (``learned_rows``): a merge cannot keep a skill a run never
learned, so the table counts, per task and method, the runs whose single adapter reached the declared
``learned_at`` and checks the suite's premise on the runs' pooled items.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..stats import wilson
from .outcomes import Outcomes
from .table import first_run, outcomes, run_learned

ONE_ANSWER_SHARE = 0.95


def one_answer(store: Outcomes, name: str) -> dict[str, Any] | None:
    """``{answer, share, gold_share, n}`` when one answer covers ≥ ONE_ANSWER_SHARE of the items; else None."""
    items = store.items(name)
    golds = [i.gold for i in items]
    if not items or None in golds or len(set(golds)) < 2:
        return None  # no reference answers (refusal, code), or a single-answer task: nothing to compare
    answer, count = Counter(i.prediction for i in items).most_common(1)[0]
    if count / len(items) < ONE_ANSWER_SHARE:
        return None
    return {"answer": answer, "share": count / len(items), "gold_share": sum(g == answer for g in golds) / len(golds),
            "n": len(items)}


def one_answer_adapters(store: Outcomes, runs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (method, seed, task) single adapter at w = 1 that ``one_answer`` flags."""
    flagged = []
    for method, by_seed in runs.items():
        for seed, run in by_seed.items():
            for task, name in run["single"]["1"].items():
                found = one_answer(store, name)
                if found:
                    flagged.append({"method": method, "seed": seed, "task": task, **found})
    return flagged


def describe(flag: dict[str, Any]) -> str:
    return (f"{flag['method']} seed {flag['seed']}, {flag['task']}: answers {flag['answer']!r} on "
            f"{flag['share']:.0%} of the {flag['n']} items, and {flag['answer']!r} is the gold answer of "
            f"{flag['gold_share']:.0%}: its accuracy is about that label's share of the gold answers (it has "
            "learned the label prior, not yet the task), and merging or continual results on this task "
            "measure a shift of that prior")




def learned_rows(store: Outcomes, runs: dict[str, Any], at: float, alpha: float) -> list[dict[str, Any]]:
    """Per (task, method): how many runs' single adapters (w = 1) learned the task (accuracy ≥ ``at``), and
    the suite's premise, "each task learned to ≥ ``at``": the Wilson lower bound of all runs' items pooled
    (these adapters on these items, not a statement about training runs) at least ``at``, over ≥ 3 runs."""
    rows = []
    for task in first_run(runs)["single"]["1"]:
        for method, by_seed in runs.items():
            m = outcomes(store, [by_seed[s]["single"]["1"][task] for s in by_seed])
            flags = run_learned(m.values, at)
            pooled = wilson(int(m.values.sum()), int(m.values.size), 1 - alpha)
            rows.append({"task": task, "method": method, "learned_runs": sum(flags), "runs": len(flags),
                         "not_learned": [s for s, f in zip(by_seed, flags) if not f],
                         "pooled": pooled.to_json(), "premise_met": bool(len(flags) >= 3 and pooled.low >= at)})
    return rows
