"""Everything the study table shows, as one JSON-able dict (``study.json``), from the study's
per-item outcomes alone (``outcomes.json.gz``), so a committed outcomes file recomputes it."""

from __future__ import annotations

from typing import Any

from .checks import learned_rows, one_answer_adapters
from .outcomes import Outcomes
from .table import (Stats, adjust, base_rows, continual_rows, convergence, headline, merge_rows, prediction,
                    primary_rows, single_rows)


def summarize(store: Outcomes) -> dict[str, Any]:
    """Tables of a finished study (see ``table`` for the definitions), with the analysis the study
    declared before it ran (``store.declared``): ``primary``: ``dev`` (each run's dev-chosen merge
    weight) or a fixed weight; ``alpha``: level of every test and interval; ``equivalence_margin``:
    the margin of every TOST; ``learned_at``: the accuracy at which a run counts as having learned a task."""
    primary = str(store.declared.get("primary", "dev"))
    alpha = float(store.declared.get("alpha", 0.05))
    margin = float(store.declared.get("equivalence_margin", 0.05))
    learned_at = float(store.declared.get("learned_at", 0.9))
    runs, continual = store.layout["runs"], store.layout.get("continual")
    methods = list(runs)
    seeds = list(next(iter(runs.values())))
    st = Stats(alpha, margin)
    base = base_rows(store, store.layout["base"])
    n_items = {t: r["n_items"] for t, r in base.items()}
    level = f"{1 - alpha:.0%}"
    notes = [f"methods: {', '.join(methods)}; training runs (seeds) per method: {len(seeds)} ({', '.join(seeds)})",
             "test items per task: " + ", ".join(f"{t} {n}" for t, n in n_items.items()),
             "base model (one model on these items, Wilson): " + ", ".join(f"{t} {r['mean']:.3f}" for t, r in base.items()),
             f"the unit is the training run: accuracies are means of per-run accuracies with a {level} t-interval over "
             f"runs; a difference is the mean of per-run differences (run i of one method paired with run i of the "
             f"other, on the same items), {level} t-interval with runs − 1 df and a t-test; verdicts: different "
             f"(p < {alpha:g}), equivalent (TOST at ±{margin:g} rejects), else inconclusive; MDE = the smallest "
             f"difference this design detects with 80 % power; secondary p-values are Holm-adjusted together"]
    if len(seeds) < 2:
        notes.append("ONE training run per method: there is no run-level interval; these numbers describe these "
                     "adapters on these items and illustrate, they do not test the methods")
    study: dict[str, Any] = {"reference_method": methods[0], "methods": methods, "seeds": seeds, "alpha": alpha,
                             "equivalence_margin": margin, "learned_at": learned_at, "n_items": n_items,
                             "base": base, "notes": notes,
                             "primary": primary_rows(store, runs, st, primary),
                             "single": single_rows(store, runs, st), "merge": merge_rows(store, runs, st),
                             "headline": headline(store, runs, st), "one_answer": one_answer_adapters(store, runs),
                             "learned": learned_rows(store, runs, learned_at, alpha),
                             "convergence": convergence(store, runs, continual)}
    if continual:
        study["continual"] = continual_rows(store, continual, st, learned_at)
    learned_by_all = [t for t in n_items if all(r["learned_runs"] == r["runs"] for r in study["learned"] if r["task"] == t)]
    if len(seeds) >= 2 and 0 < len(learned_by_all) < len(n_items):
        # exploratory, not the declared endpoint: the same comparison over the tasks every run of every
        # method learned (a rule on the single adapters, blind to the merges); its own Holm family
        study["primary_learned"] = primary_rows(store, runs, Stats(alpha, margin), primary, tasks=learned_by_all)
    adjust(st.secondary, alpha)
    study["n_secondary"] = len(st.secondary)
    study["prediction"] = prediction(store, runs)
    return study
