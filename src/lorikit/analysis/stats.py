"""Statistics for comparing adapters on the same test items.

Run-level (the training run, i.e. the seed, is the unit; use these for method comparisons):

- ``compare_runs``: difference of two methods scored as (seeds × items) outcome matrices with the
  same seeds paired and the same items: per-seed differences d_s = mean(a_s) − mean(b_s), a
  t-interval and a two-sided one-sample t-test on them with n_seeds − 1 degrees of freedom
  (scipy), the smallest effect detectable at 80 % power (statsmodels ``TTestPower``), and with a
  ``margin`` an equivalence test (TOST, statsmodels ``DescrStatsW.ttost_mean``).
- ``run_accuracy``: mean of per-seed accuracies with a t-interval over seeds.
- ``holm``: Holm-adjusted p-values (statsmodels ``multipletests``), NaN-safe.

Item-level (they describe *these* adapters on *these* items; items × seeds are treated as
independent trials, so they do not generalise to new training runs):

- ``wilson``: Wilson score interval of a proportion k / n (Wilson 1927), the interval every
  accuracy in a study carries; unlike the normal ("Wald") interval it stays inside [0, 1] and
  keeps its coverage near 0 and 1.
- ``paired_bootstrap``: interval of mean(a) − mean(b) for two systems scored on the SAME items
  (and seeds): resample items (and, independently, seeds) with replacement, keeping each item's
  pair together (Efron & Tibshirani 1993; Koehn 2004 for NLP). Percentile interval, fixed seed.
  Not run-level: with few seeds it rejects far more often than its nominal level (docs/study.md).
- ``mcnemar_exact``: McNemar's exact test on paired 0/1 outcomes: under H0 the discordant pairs
  split Binomial(n01 + n10, ½); two-sided p = min(1, 2 · P[X ≤ min(n01, n10)]). Flattened over
  seeds it is not run-level either.
- ``spread``: mean, standard deviation (ddof 1) and range over seeds.
- ``correlation``: Pearson or Spearman r with a Fisher-z interval, tanh(atanh r ± z / √(n − 3))
  (Fisher 1921; Bonett & Wright 2000 for Spearman's variance factor 1 + r²/2).

The item-level functions are plain numpy; the run-level ones call scipy and statsmodels (imported
when first used, so importing this module stays cheap). The tests check all of them against
scipy / statsmodels and textbook values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ..errors import UsageError
from .run_stats import RunAccuracy, RunComparison, StatsInputError, compare_runs, holm, run_accuracy

__all__ = ["Interval", "McNemar", "RunAccuracy", "RunComparison", "Spread", "StatsInputError", "compare_runs",
           "correlation", "holm", "mcnemar_exact", "paired_bootstrap", "run_accuracy", "spread", "wilson"]


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise UsageError(f"confidence {confidence}: must be in (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval (``low`` ≤ ``estimate`` ≤ ``high`` usually)."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def fmt(self, digits: int = 3) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n}


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval of successes / n; n = 0 gives NaN."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise UsageError(f"wilson: need 0 <= successes <= n (got {successes} of {n})")
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends (no rounding residue)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(p, low, high, n)


def _as_matrix(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise UsageError(f"{name}: expected scores per item, or per seed × item (got shape {arr.shape})")
    return arr


def paired_bootstrap(a, b, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> Interval:
    """Interval of mean(a) − mean(b); ``a``, ``b``: per-item scores, shape (items,) or (seeds, items),
    the same items (and seeds) in the same order. Items are resampled jointly for a and b; with
    several seeds, seeds are resampled too (each row of a stays paired with the same row of b).

    Not a run-level interval: a percentile bootstrap over a few seeds is too narrow once runs vary
    (its measured false-positive rate is in docs/study.md, *Statistics: the training run is the
    unit*). Compare methods over training runs with ``compare_runs``."""
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape != b.shape:
        raise UsageError(f"paired_bootstrap: a and b must be scored on the same items (shapes {a.shape} vs {b.shape})")
    diff = a - b
    seeds, items = diff.shape
    rng = np.random.default_rng(seed)
    item_idx = rng.integers(0, items, size=(n_boot, items))
    seed_idx = rng.integers(0, seeds, size=(n_boot, seeds)) if seeds > 1 else np.zeros((n_boot, 1), dtype=int)
    per_seed = np.stack([diff[:, idx].mean(axis=1) for idx in item_idx])  # (n_boot, seeds)
    boots = np.take_along_axis(per_seed, seed_idx, axis=1).mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return Interval(float(diff.mean()), float(low), float(high), items * seeds)


@dataclass(frozen=True)
class McNemar:
    only_a: int  # items a gets right and b wrong
    only_b: int
    p_value: float


def mcnemar_exact(a, b) -> McNemar:
    """McNemar's exact (binomial) test on paired 0/1 outcomes (flattened over seeds).

    Flattened over seeds it counts items × seeds as independent pairs and ignores run-to-run
    variation (measured false-positive rate: docs/study.md); compare methods with ``compare_runs``."""
    a = np.asarray(a, dtype=bool).ravel()
    b = np.asarray(b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise UsageError(f"mcnemar_exact: a and b must be scored on the same items ({a.size} vs {b.size})")
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    n = n01 + n10
    k = min(n01, n10)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n if n else 1.0
    return McNemar(n01, n10, min(1.0, 2 * tail))


@dataclass(frozen=True)
class Spread:
    mean: float
    sd: float
    low: float
    high: float
    n: int

    def fmt(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


def spread(values) -> Spread:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and min/max over seeds."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return Spread(math.nan, math.nan, math.nan, math.nan, 0)
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return Spread(float(v.mean()), sd, float(v.min()), float(v.max()), int(v.size))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def correlation(x, y, method: str = "pearson", confidence: float = 0.95) -> Interval:
    """Pearson or Spearman r of paired samples with a Fisher-z interval (NaN with n < 4 or no variance)."""
    if method not in ("pearson", "spearman"):
        raise UsageError(f"correlation method {method!r}: choose pearson or spearman")
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise UsageError(f"correlation: x and y differ in length ({x.size} vs {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n < 3 or x.std() == 0 or y.std() == 0:
        return Interval(math.nan, math.nan, math.nan, n)
    if method == "spearman":
        x, y = _ranks(x), _ranks(y)
    r = float(np.corrcoef(x, y)[0, 1])
    if n < 4:
        return Interval(r, math.nan, math.nan, n)
    factor = 1 + r * r / 2 if method == "spearman" else 1.0
    se = math.sqrt(factor / (n - 3))
    z = math.atanh(max(-0.999999, min(0.999999, r)))
    half = _z(confidence) * se
    return Interval(r, math.tanh(z - half), math.tanh(z + half), n)
