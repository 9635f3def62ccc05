"""Everything the study table shows, as one JSON-able dict (``study.json``)."""

from __future__ import annotations

from typing import Any

from .checks import one_answer_adapters
from .table import accuracy, continual_rows, headline, merge_rows, outcomes, prediction, single_rows


def summarize(runs: dict[str, Any], base: dict[str, str], continual: dict[str, Any] | None,
              n_boot: int = 2000) -> dict[str, Any]:
    """Tables of a finished study from its eval outputs (see ``table`` for the definitions)."""
    methods = list(runs)
    seeds = list(next(iter(runs.values())))
    base_rows = {t: accuracy(outcomes([p])) for t, p in base.items()}
    n_items = {t: r["n_items"] for t, r in base_rows.items()}
    notes = [f"methods: {', '.join(methods)}; seeds per method: {len(seeds)} ({', '.join(seeds)})",
             "test items per task: " + ", ".join(f"{t} {n}" for t, n in n_items.items()),
             "base model: " + ", ".join(f"{t} {r['mean']:.3f}" for t, r in base_rows.items()),
             "cells: estimate [95 % interval]; accuracies: Wilson over items × seeds; differences: paired "
             f"bootstrap over items and seeds ({n_boot} resamples, seed 0); * = interval excludes 0"]
    study: dict[str, Any] = {"reference_method": methods[0], "methods": methods, "seeds": seeds,
                             "n_items": n_items, "base": base_rows, "notes": notes,
                             "single": single_rows(runs, n_boot), "merge": merge_rows(runs, n_boot),
                             "headline": headline(runs, n_boot), "one_answer": one_answer_adapters(runs)}
    if continual:
        study["continual"] = continual_rows(continual, n_boot)
    study["prediction"] = prediction(runs)
    return study
