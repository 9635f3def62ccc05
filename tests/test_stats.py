"""lorikit.analysis.stats against textbook values and scipy.stats computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lorikit.analysis.stats import correlation, mcnemar_exact, paired_bootstrap, spread, wilson
from lorikit.errors import UsageError


def test_wilson_matches_newcombe_textbook_example():
    # Newcombe (1998), Stat. Med. 17:857, method 3 (Wilson, no continuity correction): 81/263.
    iv = wilson(81, 263)
    assert iv.estimate == pytest.approx(81 / 263)
    assert (round(iv.low, 4), round(iv.high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (3, 7), (150, 200), (1, 1000)])
def test_wilson_matches_scipy(k, n):
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    iv = wilson(k, n)
    assert iv.low == pytest.approx(ci.low, abs=1e-9) and iv.high == pytest.approx(ci.high, abs=1e-9)
    assert 0 <= iv.low <= iv.estimate <= iv.high <= 1


def test_wilson_rejects_impossible_counts_and_handles_empty():
    with pytest.raises(UsageError, match="successes"):
        wilson(5, 3)
    assert math.isnan(wilson(0, 0).estimate)


@pytest.mark.parametrize("seed", range(5))
def test_mcnemar_exact_matches_scipy_binomtest(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(60) < 0.6
    b = rng.random(60) < 0.4
    got = mcnemar_exact(a, b)
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    assert (got.only_a, got.only_b) == (n01, n10)
    assert got.p_value == pytest.approx(sps.binomtest(n01, n01 + n10, 0.5).pvalue, rel=1e-9)


def test_mcnemar_textbook_and_degenerate_cases():
    # 0 vs 6 discordant pairs: p = 2 · 0.5^6 = 0.03125.
    a = np.array([1] * 6 + [1, 0] * 5, dtype=bool)
    b = np.array([0] * 6 + [1, 0] * 5, dtype=bool)
    assert mcnemar_exact(a, b).p_value == pytest.approx(0.03125)
    assert mcnemar_exact(a, a).p_value == 1.0


def test_paired_bootstrap_interval_is_fixed_by_its_seed_and_centred_on_the_mean_difference():
    rng = np.random.default_rng(1)
    a = (rng.random(400) < 0.7).astype(float)
    b = (rng.random(400) < 0.5).astype(float)
    iv1, iv2 = paired_bootstrap(a, b, seed=3), paired_bootstrap(a, b, seed=3)
    assert iv1 == iv2
    assert iv1.estimate == pytest.approx(a.mean() - b.mean())
    # large n: the percentile interval is close to the normal one, mean ± 1.96 sd/√n
    d = a - b
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert iv1.low == pytest.approx(iv1.estimate - half, abs=0.01)
    assert iv1.high == pytest.approx(iv1.estimate + half, abs=0.01)
    assert iv1.excludes_zero


def test_paired_bootstrap_pairs_items_and_resamples_seeds():
    a = np.array([[1, 0, 1, 0] * 25, [1, 1, 0, 0] * 25], dtype=float)
    assert paired_bootstrap(a, a) .fmt() == "0.000 [0.000, 0.000]"  # identical systems: no spread at all
    shifted = paired_bootstrap(a, a - 0.25)
    assert (shifted.low, shifted.high) == pytest.approx((0.25, 0.25))
    # seed-to-seed variation widens the interval beyond the item-only one
    b = np.array([np.ones(100), np.zeros(100)])
    c = np.full((2, 100), 0.5)
    assert paired_bootstrap(b, c).high - paired_bootstrap(b, c).low > 0.5
    with pytest.raises(UsageError, match="same items"):
        paired_bootstrap(a, a[:, :10])


def test_correlation_matches_scipy_pearson_interval_and_spearman_r():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 0.6 * x + rng.normal(size=30)
    got = correlation(x, y)
    ref = sps.pearsonr(x, y)
    ci = ref.confidence_interval(0.95)
    assert got.estimate == pytest.approx(ref.statistic)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    y[3] = y[5]  # a tie
    assert correlation(x, y, "spearman").estimate == pytest.approx(sps.spearmanr(x, y).statistic)
    assert math.isnan(correlation([1, 2], [3, 4]).estimate)
    with pytest.raises(UsageError, match="kendall"):
        correlation(x, y, "kendall")


def test_spread_over_seeds():
    s = spread([0.5, 0.7, 0.9])
    assert (s.mean, s.low, s.high, s.n) == pytest.approx((0.7, 0.5, 0.9, 3))
    assert s.sd == pytest.approx(0.2)
    assert spread([0.4]).sd == 0.0
