"""lorikit.analysis.stats against textbook values and scipy.stats / statsmodels computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW

from lorikit.analysis.stats import (StatsInputError, compare_runs, correlation, holm, mcnemar_exact, paired_bootstrap,
                                    run_accuracy, spread, wilson)
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


# --- run-level: the training run (seed) is the unit --------------------------------------------


def _runs_pair(seed: int, seeds: int = 4, items: int = 50, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    a = (rng.random((seeds, items)) < 0.6 + shift).astype(float)
    b = (rng.random((seeds, items)) < 0.6).astype(float)
    return a, b


@pytest.mark.parametrize("seed", range(4))
def test_compare_runs_is_a_t_analysis_of_the_per_seed_differences(seed):
    a, b = _runs_pair(seed, shift=0.1)
    got = compare_runs(a, b, alpha=0.1)
    d = a.mean(axis=1) - b.mean(axis=1)
    ref = sps.ttest_1samp(d, 0.0)
    ci = ref.confidence_interval(0.9)
    assert got.per_seed == pytest.approx(tuple(d), abs=1e-15)
    assert got.estimate == pytest.approx(d.mean(), abs=1e-15)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert (got.n_seeds, got.n_items, got.df) == (4, 50, 3)
    # statsmodels agrees on the interval too
    assert DescrStatsW(d).tconfint_mean(0.1) == pytest.approx((got.low, got.high), abs=1e-12)
    assert got.significant == (got.p < 0.1) == got.excludes_zero
    # the MDE is the 80 %-power Cohen's d of a 4-run design times the observed sd of d_s
    es = TTestPower().solve_power(effect_size=None, nobs=4, alpha=0.1, power=0.8, alternative="two-sided")
    assert got.mde == pytest.approx(es * d.std(ddof=1), rel=1e-9)
    assert got.run_level and got.note == "" and math.isnan(got.tost_p)


def test_the_issue_example_is_not_significant_at_the_run_level():
    # per-seed differences (0.01, 0.12, 0.14) without item noise: a t-test on three runs gives p = 0.16
    items = 100
    a = np.zeros((3, items))
    for s, k in enumerate((1, 12, 14)):
        a[s, :k] = 1
    got = compare_runs(a, np.zeros((3, items)))
    assert got.per_seed == pytest.approx((0.01, 0.12, 0.14))
    assert got.p == pytest.approx(0.16, abs=0.005)
    assert got.low < 0 < got.high and got.verdict == "inconclusive"


def test_compare_runs_tost_matches_two_one_sided_scipy_tests():
    d_target = np.array([0.01, -0.02, 0.015, 0.0, 0.005])
    items = 200
    a = np.zeros((5, items))
    b = np.zeros((5, items))
    for s, d in enumerate(d_target):  # a − b = d per seed, exactly
        a[s, :100 + round(d * items)] = 1
        b[s, :100] = 1
    got = compare_runs(a, b, margin=0.05)
    d = a.mean(axis=1) - b.mean(axis=1)
    p_low = sps.ttest_1samp(d, -0.05, alternative="greater").pvalue
    p_high = sps.ttest_1samp(d, 0.05, alternative="less").pvalue
    assert got.tost_p == pytest.approx(max(p_low, p_high), rel=1e-9)
    assert got.tost_p < 0.05 and got.p > 0.05 and got.verdict == "equivalent"
    # a wide margin cannot make a difference "equivalent" when the test says different
    big = compare_runs(a, np.zeros_like(b), margin=0.05)  # +0.5 in every run
    assert big.verdict == "different"
    # too few runs to say either: inconclusive
    few = compare_runs(np.array([[1.0, 0], [0, 0]]), np.array([[0.0, 0], [0, 1]]), margin=0.05)
    assert few.verdict == "inconclusive" and few.tost_p > 0.05


def test_one_seed_has_no_run_level_interval():
    a, b = _runs_pair(0, seeds=1, shift=0.3)
    got = compare_runs(a, b, margin=0.05)
    assert not got.run_level and "one seed" in got.note
    assert all(math.isnan(x) for x in (got.low, got.high, got.p, got.tost_p, got.mde, got.sd))
    assert got.estimate == pytest.approx(a.mean() - b.mean()) and got.verdict == "inconclusive"
    assert not got.significant and not got.excludes_zero
    acc = run_accuracy(a)
    assert math.isnan(acc.low) and math.isnan(acc.high) and not acc.run_level


def test_no_seed_to_seed_variation_is_flagged_not_faked():
    a = np.array([[1, 1, 0, 0]] * 3, dtype=float)
    same = compare_runs(a, a, margin=0.05)
    assert (same.estimate, same.low, same.high, same.p, same.tost_p) == (0.0, 0.0, 0.0, 1.0, 0.0)
    assert same.verdict == "equivalent" and "no seed-to-seed variation" in same.note and math.isnan(same.mde)
    shifted = compare_runs(a, a * np.array([1, 0, 0, 0]), margin=0.05)  # +0.25 in every run
    assert shifted.p == 0.0 and shifted.tost_p == 1.0 and shifted.verdict == "different"


def test_compare_runs_rejects_mismatched_shapes_ids_and_values():
    a, b = _runs_pair(0)
    with pytest.raises(StatsInputError, match=r"same \(seeds, items\) shape.*\(4, 50\) and \(4, 49\)"):
        compare_runs(a, b[:, :49])
    with pytest.raises(ValueError, match="must be a \\(seeds, items\\) array"):
        compare_runs(a[0], b[0])
    ids = [f"q{i}" for i in range(50)]
    with pytest.raises(ValueError, match=r"item ids differ: 1 only in a \(e.g. \['q3'\]\), "
                                         r"1 only in b \(e.g. \['x'\]\)"):
        compare_runs(a, b, items_a=ids, items_b=ids[:3] + ["x"] + ids[4:])
    swapped = ids[:]
    swapped[7], swapped[8] = swapped[8], swapped[7]
    with pytest.raises(ValueError, match="same item ids in a different order.*position 7: 'q7' in a, 'q8' in b"):
        compare_runs(a, b, items_a=ids, items_b=swapped)
    with pytest.raises(ValueError, match="seed ids differ"):
        compare_runs(a, b, seeds_a=[1, 2, 3, 4], seeds_b=[1, 2, 3, 5])
    with pytest.raises(ValueError, match="only one of a and b"):
        compare_runs(a, b, items_a=ids)
    with pytest.raises(ValueError, match="3 seed ids for a but its outcomes have 4 seeds"):
        compare_runs(a, b, seeds_a=[1, 2, 3], seeds_b=[1, 2, 3])
    with pytest.raises(ValueError, match="item id 'q0' appears twice in a"):
        compare_runs(a, b, items_a=ids[:49] + ["q0"], items_b=ids[:49] + ["q0"])
    a_nan = a.copy()
    a_nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        compare_runs(a_nan, b)
    with pytest.raises(ValueError, match="margin"):
        compare_runs(a, b, margin=0)
    with pytest.raises(ValueError, match="alpha"):
        compare_runs(a, b, alpha=1.5)
    with pytest.raises(ValueError, match="power"):
        compare_runs(a, b, power=1.0)
    with pytest.raises(ValueError, match="alpha"):
        run_accuracy(a, alpha=0)
    # numpy ids that match are fine, as plain values
    got = compare_runs(a, b, items_a=np.array(ids), items_b=list(ids), seeds_a=np.arange(4), seeds_b=[0, 1, 2, 3])
    assert got.n_items == 50
    assert isinstance(StatsInputError("x"), UsageError)  # the CLI reports it as one line, exit 2


def test_run_accuracy_is_a_t_interval_over_seed_means_clipped_to_unit_range():
    a, _ = _runs_pair(3, seeds=5)
    got = run_accuracy(a)
    m = a.mean(axis=1)
    ci = sps.ttest_1samp(m, 0).confidence_interval(0.95)
    assert got.estimate == pytest.approx(m.mean()) and got.per_seed == pytest.approx(tuple(m))
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    near_one = np.ones((3, 20))
    near_one[0, :6] = 0
    got = run_accuracy(near_one)
    assert got.high == 1.0 and got.low < got.estimate < 1


def test_compare_runs_false_positive_rate_is_near_alpha_when_runs_vary():
    # 3 runs × 100 items per method, equal means, run effects (sd 0.5 on the logit scale) and item
    # difficulties: the run-level t-test keeps its 5 % level (the item-level tests do not).
    rng = np.random.default_rng(2026)
    sims, seeds, items = 400, 3, 100
    rejections = flattened = 0
    for _ in range(sims):
        difficulty = rng.normal(0.8, 1.5, size=items)
        logit = difficulty[None, None, :] + rng.normal(0, 0.5, size=(2, seeds, 1))
        y = (rng.random((2, seeds, items)) < 1 / (1 + np.exp(-logit))).astype(float)
        rejections += compare_runs(y[0], y[1]).p < 0.05
        flattened += mcnemar_exact(y[0], y[1]).p_value < 0.05
    assert rejections / sims <= 0.07
    assert flattened / sims > 0.2  # the simulation's runs do vary: items × seeds as trials over-reject


def test_holm_matches_statsmodels_and_skips_nan():
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-15)
    with_nan = holm([0.01, float("nan"), 0.04, 0.03])
    assert math.isnan(with_nan[1])
    assert np.delete(with_nan, 1) == pytest.approx(multipletests([0.01, 0.04, 0.03], method="holm")[1])
    assert holm([]).shape == (0,) and math.isnan(holm([math.nan])[0])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        holm([0.5, 1.2])


def test_run_comparison_prints_and_serialises():
    a = np.zeros((3, 100))
    for s, k in enumerate((1, 12, 14)):
        a[s, :k] = 1
    got = compare_runs(a, np.zeros((3, 100)), margin=0.05)
    assert got.fmt() == f"+0.090 [{got.low:+.3f}, +{got.high:.3f}]" and got.low < 0
    data = got.to_json()
    assert data["per_seed"] == pytest.approx([0.01, 0.12, 0.14]) and data["verdict"] == "inconclusive"
    assert data["margin"] == 0.05 and data["n_seeds"] == 3 and data["run_level"] is True
    assert run_accuracy(a).to_json()["per_seed"] == pytest.approx([0.01, 0.12, 0.14])
