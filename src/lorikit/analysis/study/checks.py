"""Checks to read before trusting an accuracy: single adapters that give one answer to (almost) every item.

On a task whose gold answers come from a few labels (true / false, A / B), an adapter that learned
only the label prior — "true" to everything — scores the majority rate and looks like a partly
learned task. Merging or continual training that moves such an adapter's score measures a shift of
that prior, not of a skill. The study flags every single adapter (w = 1) whose most frequent answer
covers at least ``ONE_ANSWER_SHARE`` of the items while the gold answers take at least two values,
and prints the share of items on which that answer is right (the accuracy it explains).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .outcomes import Outcomes

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

