"""The study's numbers, from per-item outcomes (``Outcomes``), with the training run as the unit.

Every eval of a task scores the same first N test items, so one method's outcomes on a task form a
(seeds × items) 0/1 matrix, and two methods' matrices pair seed i with seed i and item j with item
j. Every comparison is ``compare_runs`` of two such matrices: per-seed differences, a t-interval
with n − 1 degrees of freedom, a t-test, the smallest effect the design could detect (80 % power),
and, against the study's equivalence margin, a TOST verdict: ``different``, ``equivalent`` or
``inconclusive``. Accuracies are ``run_accuracy`` (mean of the per-seed accuracies, t-interval over
seeds). Only the base model — one model on these items — gets a Wilson interval over items.

- down-weighting loss(w) = single@1 − single@w   (the adapter alone, scaled by w)
- interference(w)        = single@w − merged@w   (what the other adapters cost at the same scale)
- primary endpoint: merged accuracy over every task's test items at the weight each run chose on
  dev data (or a fixed weight), each method minus the first method.
- prediction: for every pair (a, b) of one run's adapters, measured interference
  = mean over t ∈ {a, b} of single_t@pw − pair_t@pw, against the interference report's row
  overlap, column overlap and output-shift ratio (other adapter's shift on t ÷ own adapter's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..stats import compare_runs, correlation, run_accuracy, wilson
from ...errors import LorikitError
from .outcomes import Outcomes


class Matrix:
    """(seeds × items) outcomes and the item ids of their columns."""

    def __init__(self, values: np.ndarray, ids: list[str]):
        self.values, self.ids = values, ids

    def __sub__(self, other: "Matrix") -> "Matrix":
        if other.ids != self.ids or other.values.shape != self.values.shape:
            raise LorikitError("study table: outcomes on different items cannot be subtracted")
        return Matrix(self.values - other.values, self.ids)

    @staticmethod
    def concat(parts: list[tuple[str, "Matrix"]]) -> "Matrix":
        """Tasks side by side (item ids prefixed by their task)."""
        return Matrix(np.concatenate([m.values for _, m in parts], axis=1),
                      [f"{t}/{i}" for t, m in parts for i in m.ids])


def outcomes(store: Outcomes, names: list[str]) -> Matrix:
    """(seeds × items) 0/1 outcomes of evals that must have scored the same items in the same order."""
    loaded = [store.items(n) for n in names]
    ids = [i.id for i in loaded[0]]
    for n, other in zip(names, loaded):
        if [i.id for i in other] != ids:
            raise LorikitError(f"eval {n}: scored different test items than {names[0]} (evals must share data and limit)")
    return Matrix(np.array([[float(i.correct) for i in one] for one in loaded], dtype=float), ids)


class Stats:
    """The study's declared analysis: level, equivalence margin; every comparison is kept so the
    secondary ones can be Holm-adjusted together at the end."""

    def __init__(self, alpha: float, margin: float):
        self.alpha, self.margin = alpha, margin
        self.secondary: list[dict[str, Any]] = []

    def accuracy(self, m: Matrix) -> dict[str, Any]:
        acc = run_accuracy(m.values, alpha=self.alpha)
        return {"mean": acc.estimate, "low": acc.low, "high": acc.high, "per_seed": list(acc.per_seed),
                "seeds": m.values.shape[0], "n_items": m.values.shape[1]}

    def compare(self, a: Matrix, b: Matrix, primary: bool = False) -> dict[str, Any]:
        r = compare_runs(a.values, b.values, alpha=self.alpha, items_a=a.ids, items_b=b.ids, margin=self.margin)
        out = {"estimate": r.estimate, "low": r.low, "high": r.high, "p": r.p, "per_seed": list(r.per_seed),
               "n_seeds": r.n_seeds, "n_items": r.n_items, "mde": r.mde, "tost_p": r.tost_p,
               "verdict": r.verdict, "significant": bool(r.p < self.alpha) if math.isfinite(r.p) else False}
        if not primary:
            self.secondary.append(out)
        return out


def run_learned(values: np.ndarray, at: float) -> list[bool]:
    """Per run (row of a seeds × items 0/1 matrix): did it learn the task, i.e. score at least ``at``?"""
    return [bool(row.mean() >= at - 1e-12) for row in values]


def first_run(runs: dict[str, Any]) -> dict[str, Any]:
    """The first method's first run: the layout every run shares (its tasks and weights)."""
    return next(iter(next(iter(runs.values())).values()))


def single_rows(store: Outcomes, runs: dict[str, Any], st: Stats) -> list[dict[str, Any]]:
    """Each method's single adapters at full weight vs the first method's (paired by seed)."""
    ref_method = next(iter(runs))
    rows = []
    for method in runs:
        for task in first_run(runs)["single"]["1"]:
            m = outcomes(store, [runs[method][s]["single"]["1"][task] for s in runs[method]])
            ref = outcomes(store, [runs[ref_method][s]["single"]["1"][task] for s in runs[ref_method]])
            row = {"method": method, "task": task, "accuracy": st.accuracy(m)}
            if method != ref_method and ref.values.shape == m.values.shape:
                row["vs_ref"] = st.compare(m, ref)
                row["ratio_to_ref"] = float(m.values.mean() / ref.values.mean()) if ref.values.mean() else math.nan
            rows.append(row)
    return rows


def merge_rows(store: Outcomes, runs: dict[str, Any], st: Stats) -> list[dict[str, Any]]:
    """One row per (method, task, w): single@w, merged@w, down-weighting loss, interference, Δ vs first."""
    rows = []
    ref_method = next(iter(runs))
    weights, tasks = list(first_run(runs)["merged"]), list(first_run(runs)["single"]["1"])

    def mat(method: str, kind: str, w: str, task: str) -> Matrix:
        return outcomes(store, [runs[method][s][kind][w][task] for s in runs[method]])

    for method in runs:
        for task in tasks:
            one = mat(method, "single", "1", task)
            for w in weights:
                single, merged = mat(method, "single", w, task), mat(method, "merged", w, task)
                row = {"method": method, "task": task, "weight": float(w), "single": st.accuracy(single),
                       "merged": st.accuracy(merged), "interference": st.compare(single, merged)}
                if w != "1":
                    row["downweighting_loss"] = st.compare(one, single)
                ref_s, ref_m = mat(ref_method, "single", w, task), mat(ref_method, "merged", w, task)
                if method != ref_method and ref_s.values.shape == single.values.shape:
                    row["interference_vs_ref"] = st.compare(single - merged, ref_s - ref_m)
                rows.append(row)
    return rows


def _pooled(store: Outcomes, by_seed: dict[str, Any], kind: str, w: str, tasks: list[str]) -> Matrix:
    return Matrix.concat([(t, outcomes(store, [by_seed[s][kind][w][t] for s in by_seed])) for t in tasks])


def headline(store: Outcomes, runs: dict[str, Any], st: Stats) -> list[dict[str, Any]]:
    """Per method and fixed w, all tasks' items side by side: interference, down-weighting loss, the
    merged model's accuracy, and the differences of interference and merged accuracy from the first method."""
    ref_method = next(iter(runs))
    tasks = list(first_run(runs)["single"]["1"])
    rows = []
    for w in first_run(runs)["merged"]:
        ref_merged = _pooled(store, runs[ref_method], "merged", w, tasks)
        ref_int = _pooled(store, runs[ref_method], "single", w, tasks) - ref_merged
        for method in runs:
            single, merged = _pooled(store, runs[method], "single", w, tasks), _pooled(store, runs[method], "merged", w, tasks)
            row = {"method": method, "weight": float(w), "interference": st.compare(single, merged),
                   "merged": st.accuracy(merged)}
            if w != "1":
                row["downweighting_loss"] = st.compare(_pooled(store, runs[method], "single", "1", tasks), single)
            if method != ref_method and ref_int.values.shape == single.values.shape:
                row["interference_vs_ref"] = st.compare(single - merged, ref_int)
                row["merged_vs_ref"] = st.compare(merged, ref_merged)
            rows.append(row)
    return rows


def dev_weight(store: Outcomes, run: dict[str, Any]) -> str:
    """The merge weight a user would pick: the best mean dev accuracy over the tasks (ties: the larger weight)."""
    scores = {w: np.mean([np.mean([i.correct for i in store.items(name)]) for name in evals.values()])
              for w, evals in run["dev_merged"].items()}
    if not scores:
        raise LorikitError("study table: the primary endpoint needs dev evals of the merges (weights)")
    return max(scores, key=lambda w: (round(float(scores[w]), 12), float(w)))


def primary_rows(store: Outcomes, runs: dict[str, Any], st: Stats, primary: str,
                 tasks: list[str] | None = None) -> dict[str, Any]:
    """The primary endpoint: merged accuracy over all tasks' test items (or ``tasks``') at each run's
    chosen weight (``dev``) or a fixed one, each method minus the first; Holm over these comparisons only."""
    ref_method = next(iter(runs))
    tasks = tasks or list(first_run(runs)["single"]["1"])
    chosen = {m: {s: (dev_weight(store, run) if primary == "dev" else primary) for s, run in by_seed.items()}
              for m, by_seed in runs.items()}

    def merged_at_choice(method: str) -> Matrix:
        by_seed = runs[method]
        return Matrix.concat([(t, outcomes(store, [by_seed[s]["merged"][chosen[method][s]][t] for s in by_seed]))
                              for t in tasks])

    ref = merged_at_choice(ref_method)
    rows = []
    for method in runs:
        m = merged_at_choice(method)
        row = {"method": method, "weights": chosen[method], "merged": st.accuracy(m)}
        if method != ref_method and m.values.shape == ref.values.shape:
            row["vs_ref"] = st.compare(m, ref, primary=True)
        rows.append(row)
    adjust([r["vs_ref"] for r in rows if "vs_ref" in r], st.alpha)
    return {"endpoint": ("merged accuracy at the dev-chosen weight" if primary == "dev"
                         else f"merged accuracy at w = {primary}"), "weight": primary, "rows": rows, "tasks": tasks}


def adjust(comparisons: list[dict[str, Any]], alpha: float) -> None:
    """Holm's step-down adjustment over ``comparisons``, of the difference tests and, as their own family,
    of the equivalence tests (in place: ``p_holm``, ``significant_holm``, ``tost_p_holm``, ``equivalent_holm``):
    a family of "no difference" claims needs the same error control as a family of differences."""
    from ..stats import holm

    if not comparisons:
        return
    adjusted = holm([c["p"] for c in comparisons])
    tost = holm([c.get("tost_p", math.nan) for c in comparisons])
    for c, p, q in zip(comparisons, adjusted, tost):
        c["p_holm"], c["tost_p_holm"] = float(p), float(q)
        c["significant_holm"] = bool(math.isfinite(p) and p < alpha)
        c["equivalent_holm"] = bool(math.isfinite(q) and q < alpha)


def continual_rows(store: Outcomes, cont: dict[str, Any], st: Stats, at: float) -> list[dict[str, Any]]:
    """Forgetting of the first task (before − after) and the second task's score, per method; the
    first method (LoRA; plain LoRA, A and B trained, with ``plain_lora``) is the control each method's
    forgetting is compared with — over every run, and again over the runs of both methods that learned
    both tasks (the first before, the second after; ``run_learned`` at ``at``), the setting in which
    forgetting means losing a learned skill."""
    first, then = cont["first"], cont["then"]
    rows, ref = [], None
    for method, by_seed in cont["methods"].items():
        seeds = list(by_seed)

        def get(part: str, task: str, only: list[str] = seeds, by_seed: dict = by_seed) -> Matrix:
            return outcomes(store, [by_seed[s][part][task] for s in only])

        def forgetting(only: list[str], get=get) -> Matrix:
            return get("before", first, only) - get("after", first, only)

        before_first, after_first = get("before", first), get("after", first)
        after_then, alone_then = get("after", then), get("single", then)
        both = [s for s, a, b in zip(seeds, run_learned(before_first.values, at), run_learned(after_then.values, at))
                if a and b]
        row = {"method": method, "first": first, "then": then, "learned_both": both, "runs": len(seeds),
               "first_before": st.accuracy(before_first), "first_after": st.accuracy(after_first),
               "forgetting": st.compare(before_first, after_first),
               "then_before": st.accuracy(get("before", then)), "then_after": st.accuracy(after_then),
               "then_alone": st.accuracy(alone_then), "then_gap_to_alone": st.compare(alone_then, after_then)}
        if ref is None:
            ref = (forgetting, set(both), seeds)
        elif ref[2] == seeds:
            row["forgetting_vs_ref"] = st.compare(forgetting(seeds), ref[0](seeds))
            common = [s for s in seeds if s in both and s in ref[1]]
            row["learned_both_with_ref"] = common
            if len(common) >= 2:  # one run has no run-level interval
                row["forgetting_vs_ref_learned"] = st.compare(forgetting(common), ref[0](common))
        rows.append(row)
    return rows


def convergence(store: Outcomes, runs: dict[str, Any], continual: dict[str, Any] | None) -> dict[str, Any]:
    """How each adapter's training ended: on a dev-loss plateau or at the step cap (the continual arm's
    second trainings count too)."""
    names = [name for by_seed in runs.values() for run in by_seed.values() for name in run.get("trainings", {}).values()]
    names += [run[key] for by_seed in (continual or {}).get("methods", {}).values()
              for run in by_seed.values() for key in ("first_training", "training") if key in run]
    records = {n: store.training(n) for n in names}
    stopped = [r["stopped"] for r in records.values() if r]
    at_cap = [n for n, r in records.items() if r and r["stopped"] == "cap"]
    share = len(at_cap) / len(stopped) if stopped else math.nan
    return {"adapters": len(names), "with_record": len(stopped), "at_cap": at_cap,
            "plateau_share": 1 - share if stopped else math.nan, "warning": bool(stopped) and share > 0.10,
            "chosen_steps": {n: r["chosen_step"] for n, r in records.items() if r}}


def base_rows(store: Outcomes, base: dict[str, str]) -> dict[str, Any]:
    """The base model on each task's items (one model: Wilson over these items)."""
    out = {}
    for t, name in base.items():
        m = outcomes(store, [name]).values
        w = wilson(int(m.sum()), m.size)
        out[t] = {"mean": float(m.mean()), "low": w.low, "high": w.high, "n_items": m.shape[1], "seeds": 1}
    return out


def _pair_measures(analysis: dict[str, Any], a: str, b: str) -> dict[str, float]:
    comp = analysis["comparison"]
    names = comp["adapters"]
    i, j = names.index(a), names.index(b)
    nan = lambda v: math.nan if v is None else float(v)  # noqa: E731
    out = {"row_overlap": nan(comp["overall"]["row_overlap"][i][j]),
           "col_overlap": nan(comp["overall"]["col_overlap"][i][j])}
    shift = analysis.get("output_shift")
    if shift:
        sa, st = shift["adapters"], shift["tasks"]
        m = [[nan(v) for v in row] for row in shift["overall"]]
        ratios = [m[sa.index(o)][st.index(t)] / m[sa.index(t)][st.index(t)] for t, o in ((a, b), (b, a))]
        out["shift_ratio"] = float(np.mean(ratios))
    return out


def prediction(store: Outcomes, runs: dict[str, Any]) -> dict[str, Any]:
    """Pairs (method, seed, a+b) with measured interference and the report's measures; correlations
    over adapter pairs (the unit here is a pair of adapters, not a method comparison)."""
    points = []
    for method, by_seed in runs.items():
        for seed, run in by_seed.items():
            if not run.get("pairs"):
                continue
            analysis = store.analysis(run["analysis"])
            for pair, evals in run["pairs"].items():
                a, b = pair.split("+")
                pw = run["pair_weight"]
                measured = np.mean([outcomes(store, [run["single"][pw][t]]).values.mean()
                                    - outcomes(store, [evals[t]]).values.mean() for t in (a, b)])
                points.append({"method": method, "seed": seed, "pair": pair, "interference": float(measured),
                               **_pair_measures(analysis, a, b)})
    correlations = {}
    for measure in ("row_overlap", "col_overlap", "shift_ratio"):
        xs = [p.get(measure, math.nan) for p in points]
        ys = [p["interference"] for p in points]
        correlations[measure] = {k: correlation(xs, ys, k).to_json() for k in ("pearson", "spearman")}
    return {"points": points, "correlations": correlations}
