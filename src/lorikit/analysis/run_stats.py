"""Run-level statistics: the training run (seed) is the unit of replication.

Two methods trained with the same seeds and scored on the same test items give two (seeds × items)
outcome matrices. Items within one run are not independent replications of the training — a run
that happened to learn a little more is right on many items at once — so every interval and test
here is computed from one number per run: the per-seed accuracy, or the per-seed difference
d_s = mean(a_s) − mean(b_s). With n seeds that is a one-sample t-analysis with n − 1 degrees of
freedom; the conclusion is about new training runs scored on these test items. docs/study.md
(*Statistics: the training run is the unit*) has the simulation that measures its false-positive
rate against the item-level alternatives.

scipy and statsmodels are imported inside the functions: importing lorikit stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from ..errors import UsageError

VERDICTS = ("different", "equivalent", "inconclusive")


class StatsInputError(UsageError, ValueError):
    """Outcome matrices that cannot be compared (shapes, ids, values): a ``UsageError`` for the
    command line and a ``ValueError`` for Python callers."""


@dataclass(frozen=True)
class RunComparison:
    """mean(a) − mean(b) over training runs. ``low``/``high``: (1 − alpha) t-interval of the mean
    per-seed difference; ``p``: two-sided one-sample t-test of the per-seed differences against 0;
    ``mde``: the smallest |difference| this design (n_seeds, the observed sd of the per-seed
    differences, alpha) detects with 80 % power; ``tost_p``: equivalence test against ±``margin``
    (NaN without a margin). ``run_level`` is False with one seed: then there is no interval or
    test (NaN), and ``note`` says why."""

    estimate: float
    low: float
    high: float
    p: float
    per_seed: tuple[float, ...]
    n_seeds: int
    n_items: int
    df: int
    sd: float
    mde: float
    alpha: float
    margin: float | None
    tost_p: float
    verdict: str
    mean_a: float
    mean_b: float
    run_level: bool
    note: str

    @property
    def significant(self) -> bool:
        return self.p < self.alpha  # False for NaN

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def fmt(self, digits: int = 3) -> str:
        return f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def to_json(self) -> dict:
        out = asdict(self)
        out["per_seed"] = list(self.per_seed)
        return out


@dataclass(frozen=True)
class RunAccuracy:
    """Mean of per-seed accuracies with a (1 − alpha) t-interval over seeds (n_seeds − 1 df),
    clipped to [0, 1] when every outcome lies in [0, 1]; NaN bounds with one seed."""

    estimate: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    n_seeds: int
    n_items: int
    df: int
    sd: float
    alpha: float
    run_level: bool
    note: str

    def fmt(self, digits: int = 3) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_json(self) -> dict:
        out = asdict(self)
        out["per_seed"] = list(self.per_seed)
        return out


ONE_SEED = "one seed: no run-level interval or test (train more seeds)"
NO_SPREAD = "no seed-to-seed variation: zero-width interval, no MDE (train more seeds)"


def _check_alpha(alpha: float, where: str) -> None:
    if not 0 < alpha < 1:
        raise StatsInputError(f"{where}: alpha {alpha} must be in (0, 1)")


def _runs(x, name: str, where: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 2 or 0 in arr.shape:
        raise StatsInputError(f"{where}: {name} must be a (seeds, items) array with at least one of each "
                              f"(got shape {arr.shape}; one seed is x[None, :])")
    if not np.isfinite(arr).all():
        raise StatsInputError(f"{where}: {name} holds non-finite values (NaN or inf)")
    return arr


def _plain(ids, what: str, side: str, n: int, where: str) -> list:
    out = [x.item() if isinstance(x, np.generic) else x for x in ids]
    if len(out) != n:
        raise StatsInputError(f"{where}: {len(out)} {what} ids for {side} but its outcomes have {n} {what}s")
    if len(set(out)) != len(out):
        dup = next(x for i, x in enumerate(out) if x in out[:i])
        raise StatsInputError(f"{where}: {what} id {dup!r} appears twice in {side}")
    return out


def _check_ids(ids_a, ids_b, what: str, n: int, where: str) -> None:
    """Both or neither given; same ids, same order (a row or column of a must be paired with the same of b)."""
    if ids_a is None and ids_b is None:
        return
    if ids_a is None or ids_b is None:
        raise StatsInputError(f"{where}: {what} ids given for only one of a and b (give both or neither)")
    a, b = _plain(ids_a, what, "a", n, where), _plain(ids_b, what, "b", n, where)
    if a == b:
        return
    set_a, set_b = set(a), set(b)
    only_a, only_b = [x for x in a if x not in set_b], [x for x in b if x not in set_a]
    if not only_a and not only_b:
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        raise StatsInputError(f"{where}: a and b hold the same {what} ids in a different order "
                              f"(first at position {i}: {a[i]!r} in a, {b[i]!r} in b)")
    raise StatsInputError(f"{where}: {what} ids differ: {len(only_a)} only in a (e.g. {only_a[:3]}), "
                          f"{len(only_b)} only in b (e.g. {only_b[:3]})")


@lru_cache(maxsize=256)
def _mde_effect_size(n: int, alpha: float, power: float) -> float:
    """Standardised (Cohen's d) effect a two-sided one-sample t-test on n values detects with ``power``."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                          alternative="two-sided"))


def _t_summary(values: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) of a t-interval over ``values``; NaN spread/bounds for one value."""
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    if np.ptp(values) == 0:  # the t-statistic would be 0/0 or x/0: scipy gives NaN and warns
        return mean, 0.0, mean, mean
    from scipy import stats as sps

    sd = float(values.std(ddof=1))
    low, high = sps.t.interval(1 - alpha, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return mean, sd, float(low), float(high)


def _tests(d: np.ndarray, alpha: float, margin: float | None) -> tuple[float, float]:
    """(two-sided t-test p against 0, TOST p against ±margin or NaN) on the per-seed differences."""
    mean = float(d.mean())
    if np.ptp(d) == 0:  # no variation: the tests' limits as the sd → 0
        p = 1.0 if mean == 0 else 0.0
        return p, (math.nan if margin is None else (0.0 if abs(mean) < margin else 1.0))
    from scipy import stats as sps

    p = float(sps.ttest_1samp(d, 0.0).pvalue)
    if margin is None:
        return p, math.nan
    from statsmodels.stats.weightstats import DescrStatsW

    return p, float(DescrStatsW(d).ttost_mean(-margin, margin)[0])


def _verdict(p: float, tost_p: float, alpha: float) -> str:
    if p < alpha:
        return "different"
    if tost_p < alpha:
        return "equivalent"
    return "inconclusive"


def compare_runs(a, b, alpha: float = 0.05, *, items_a=None, items_b=None, seeds_a=None, seeds_b=None,
                 margin: float | None = None, power: float = 0.8) -> RunComparison:
    """Compare method A with method B over training runs.

    ``a``, ``b``: (seeds, items) outcomes (0/1 or scores), row s of a and of b trained with the same
    seed, column i the same test item. ``items_*`` / ``seeds_*``: optional ids of the columns /
    rows; given, they must match exactly, order included. ``margin``: equivalence margin of the
    TOST (a difference in accuracy, e.g. 0.05). ``verdict``: "different" if p < alpha, else
    "equivalent" if tost_p < alpha, else "inconclusive" (always so with one seed)."""
    where = "compare_runs"
    _check_alpha(alpha, where)
    if not 0 < power < 1:
        raise StatsInputError(f"{where}: power {power} must be in (0, 1)")
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        raise StatsInputError(f"{where}: margin {margin} must be a positive number")
    a, b = _runs(a, "a", where), _runs(b, "b", where)
    if a.shape != b.shape:
        raise StatsInputError(f"{where}: a and b must have the same (seeds, items) shape (got {a.shape} and {b.shape})")
    n_seeds, n_items = a.shape
    _check_ids(seeds_a, seeds_b, "seed", n_seeds, where)
    _check_ids(items_a, items_b, "item", n_items, where)
    d = (a - b).mean(axis=1)
    estimate, sd, low, high = _t_summary(d, alpha)
    if n_seeds < 2:
        p, tost_p, mde, note = math.nan, math.nan, math.nan, ONE_SEED
    else:
        p, tost_p = _tests(d, alpha, margin)
        mde = sd * _mde_effect_size(n_seeds, alpha, power) if sd > 0 else math.nan
        note = NO_SPREAD if sd == 0 else ""
    return RunComparison(estimate=estimate, low=low, high=high, p=p, per_seed=tuple(float(x) for x in d),
                         n_seeds=n_seeds, n_items=n_items, df=n_seeds - 1, sd=sd, mde=mde, alpha=alpha,
                         margin=margin, tost_p=tost_p, verdict=_verdict(p, tost_p, alpha),
                         mean_a=float(a.mean()), mean_b=float(b.mean()), run_level=n_seeds > 1, note=note)


def run_accuracy(a, alpha: float = 0.05) -> RunAccuracy:
    """Accuracy of one method over training runs: ``a`` is (seeds, items); the interval is a
    t-interval over the per-seed means (n_seeds − 1 df)."""
    where = "run_accuracy"
    _check_alpha(alpha, where)
    a = _runs(a, "a", where)
    per_seed = a.mean(axis=1)
    estimate, sd, low, high = _t_summary(per_seed, alpha)
    if ((a >= 0) & (a <= 1)).all() and a.shape[0] > 1:  # an accuracy cannot leave [0, 1]; coverage is unchanged
        low, high = max(0.0, low), min(1.0, high)
    n_seeds = a.shape[0]
    note = ONE_SEED if n_seeds < 2 else (NO_SPREAD if sd == 0 else "")
    return RunAccuracy(estimate=estimate, low=low, high=high, per_seed=tuple(float(x) for x in per_seed),
                       n_seeds=n_seeds, n_items=a.shape[1], df=n_seeds - 1, sd=sd, alpha=alpha,
                       run_level=n_seeds > 1, note=note)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control) of a 1-D sequence, same order;
    NaN entries (comparisons without a test) stay NaN and do not count towards the family."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise StatsInputError(f"holm: expected a 1-D sequence of p-values (got shape {p.shape})")
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        bad = p[ok][(p[ok] < 0) | (p[ok] > 1)]
        raise StatsInputError(f"holm: p-values must lie in [0, 1] (got {bad[:3].tolist()})")
    out = np.full(p.shape, np.nan)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="holm")[1]
    return out
