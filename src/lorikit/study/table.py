"""The study's numbers, from per-item eval records: accuracies with Wilson intervals, paired
differences (bootstrap over items and seeds, McNemar's exact test), and the prediction test.

Every eval of a task scores the same first N test items, so two systems' outcomes on a task form
a (seeds × items) pair of 0/1 matrices; a difference's interval is ``paired_bootstrap`` of them,
and it is *significant* when that 95 % interval excludes 0.

- down-weighting loss(w) = single@1 − single@w   (the adapter alone, scaled by w)
- interference(w)        = single@w − merged@w   (what the other adapters cost at the same scale)
- Δ interference vs the first method: paired over items and seeds (seed i of both methods).
- prediction: for every pair (a, b) of one run's adapters, measured interference
  = mean over t ∈ {a, b} of single_t@pw − pair_t@pw, against the interference report's row
  overlap, column overlap and output-shift ratio (other adapter's shift on t ÷ own adapter's).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.stats import correlation, mcnemar_exact, paired_bootstrap, spread, wilson
from ..errors import LorikitError
from ..eval.result import ItemResult, read_items


@lru_cache(maxsize=None)
def items(path: str) -> tuple[ItemResult, ...]:
    """An eval's per-item results, read from disk once per process (the tables and the checks share them)."""
    return tuple(read_items(path))


def outcomes(paths: list[str]) -> np.ndarray:
    """(seeds × items) 0/1 outcomes of evals that must have scored the same items in the same order."""
    loaded = [items(str(p)) for p in paths]
    ids = [i.id for i in loaded[0]]
    for p, other in zip(paths, loaded):
        if [i.id for i in other] != ids:
            raise LorikitError(f"{p}: scored different test items than {paths[0]} (evals must share data and limit)")
    return np.array([[float(i.correct) for i in one] for one in loaded], dtype=float)


def accuracy(m: np.ndarray) -> dict[str, Any]:
    """Mean accuracy, Wilson interval over the pooled items × seeds, spread of the per-seed means."""
    s = spread(m.mean(axis=1))
    w = wilson(int(m.sum()), m.size)
    return {"mean": float(m.mean()), "low": w.low, "high": w.high, "n_items": m.shape[1], "seeds": m.shape[0],
            "sd_seeds": s.sd}


def difference(a: np.ndarray, b: np.ndarray, n_boot: int, mcnemar: bool = True) -> dict[str, Any]:
    iv = paired_bootstrap(a, b, n_boot=n_boot, seed=0)
    out = {**iv.to_json(), "significant": iv.excludes_zero}
    if mcnemar and set(np.unique(np.concatenate([a.ravel(), b.ravel()]))) <= {0.0, 1.0}:
        out["mcnemar_p"] = mcnemar_exact(a, b).p_value
    return out


def merge_rows(runs: dict[str, Any], n_boot: int) -> list[dict[str, Any]]:
    """One row per (method, task, w): single@w, merged@w, down-weighting loss, interference, Δ vs first."""
    rows = []
    ref_method = next(iter(runs))
    weights = list(next(iter(runs[ref_method].values()))["merged"])
    tasks = list(next(iter(runs[ref_method].values()))["single"]["1"])

    def mat(method: str, kind: str, w: str, task: str) -> np.ndarray:
        return outcomes([runs[method][s][kind][w][task] for s in runs[method]])

    for method in runs:
        for task in tasks:
            one = mat(method, "single", "1", task)
            for w in weights:
                single, merged = mat(method, "single", w, task), mat(method, "merged", w, task)
                row = {"method": method, "task": task, "weight": float(w), "single": accuracy(single),
                       "merged": accuracy(merged), "downweighting_loss": difference(one, single, n_boot),
                       "interference": difference(single, merged, n_boot)}
                ref_s, ref_m = mat(ref_method, "single", w, task), mat(ref_method, "merged", w, task)
                if method != ref_method and ref_s.shape == single.shape:
                    row["interference_vs_ref"] = difference(single - merged, ref_s - ref_m, n_boot, mcnemar=False)
                rows.append(row)
    return rows


def single_rows(runs: dict[str, Any], n_boot: int) -> list[dict[str, Any]]:
    """Each method's single adapters at full weight vs the first method's (paired)."""
    ref_method = next(iter(runs))
    rows = []
    for method in runs:
        for task in next(iter(runs[method].values()))["single"]["1"]:
            m = outcomes([runs[method][s]["single"]["1"][task] for s in runs[method]])
            ref = outcomes([runs[ref_method][s]["single"]["1"][task] for s in runs[ref_method]])
            row = {"method": method, "task": task, "accuracy": accuracy(m)}
            if method != ref_method and ref.shape == m.shape:
                row["vs_ref"] = difference(m, ref, n_boot)
                row["ratio_to_ref"] = float(m.mean() / ref.mean()) if ref.mean() else math.nan
            rows.append(row)
    return rows


def continual_rows(cont: dict[str, Any], n_boot: int) -> list[dict[str, Any]]:
    """Forgetting of the first task (before − after) and the second task's score, per method."""
    first, then = cont["first"], cont["then"]
    rows = []
    for method, by_seed in cont["methods"].items():
        seeds = list(by_seed)
        get = lambda part, task: outcomes([by_seed[s][part][task] for s in seeds])  # noqa: E731
        before_first, after_first = get("before", first), get("after", first)
        after_then, alone_then = get("after", then), get("single", then)
        rows.append({"method": method, "first": first, "then": then,
                     "first_before": accuracy(before_first), "first_after": accuracy(after_first),
                     "forgetting": difference(before_first, after_first, n_boot),
                     "then_before": accuracy(get("before", then)), "then_after": accuracy(after_then),
                     "then_alone": accuracy(alone_then),
                     "then_gap_to_alone": difference(alone_then, after_then, n_boot)})
    return rows


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


def prediction(runs: dict[str, Any]) -> dict[str, Any]:
    """Pairs (method, seed, a+b) with measured interference and the report's measures; correlations."""
    points = []
    for method, by_seed in runs.items():
        for seed, run in by_seed.items():
            if not run.get("pairs"):
                continue
            analysis = json.loads(Path(run["analysis"]).read_text())
            for pair, evals in run["pairs"].items():
                a, b = pair.split("+")
                pw = run["pair_weight"]
                measured = np.mean([outcomes([run["single"][pw][t]]).mean() - outcomes([evals[t]]).mean()
                                    for t in (a, b)])
                points.append({"method": method, "seed": seed, "pair": pair, "interference": float(measured),
                               **_pair_measures(analysis, a, b)})
    correlations = {}
    for measure in ("row_overlap", "col_overlap", "shift_ratio"):
        xs = [p.get(measure, math.nan) for p in points]
        ys = [p["interference"] for p in points]
        correlations[measure] = {k: correlation(xs, ys, k).to_json() for k in ("pearson", "spearman")}
    return {"points": points, "correlations": correlations}


def headline(runs: dict[str, Any], n_boot: int) -> list[dict[str, Any]]:
    """Per method and w: interference, down-weighting loss and the merged accuracy over all tasks'
    items pooled (items of every task side by side, seeds paired), and the differences of interference
    and of merged accuracy from the first method's."""
    ref_method = next(iter(runs))
    first = next(iter(runs[ref_method].values()))
    tasks = list(first["single"]["1"])

    def pooled(method: str, kind: str, w: str) -> np.ndarray:
        return np.concatenate([outcomes([runs[method][s][kind][w][t] for s in runs[method]]) for t in tasks], axis=1)

    rows = []
    for w in first["merged"]:
        ref_merged = pooled(ref_method, "merged", w)
        ref = pooled(ref_method, "single", w) - ref_merged
        for method in runs:
            single, merged = pooled(method, "single", w), pooled(method, "merged", w)
            row = {"method": method, "weight": float(w), "interference": difference(single, merged, n_boot),
                   "downweighting_loss": difference(pooled(method, "single", "1"), single, n_boot),
                   "merged": accuracy(merged)}
            if method != ref_method and ref.shape == single.shape:
                row["interference_vs_ref"] = difference(single - merged, ref, n_boot, mcnemar=False)
                # what a user keeps: the merged model's accuracy, down-weighting and interference together
                row["merged_vs_ref"] = difference(merged, ref_merged, n_boot)
            rows.append(row)
    return rows
