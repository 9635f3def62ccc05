"""False-positive rate, coverage and power of the study's difference tests, by simulation.

    python bench/bench_stats_fpr.py [--sims 2000] [--json bench/results/stats_fpr.json]

Two methods A and B are trained with n seeds each (3 or 5) and scored on the same 300 test items.
Item i has its own difficulty (logit l_i ~ N(0.8, 1.5²), mean accuracy ≈ 0.65, drawn afresh in every
simulation); every training run r (method × seed) has its own random effect v_r ~ N(0, τ²) on the
logit scale, and run r answers item i correctly with probability expit(l_i + v_r + δ·[r is A's]).
τ is set so that the sd of a run's expected accuracy is 0, 0.02, 0.05 or 0.1 (the printed "run sd"
is that sd as measured in the simulation). δ = 0 (equal means): every rejection is a false positive.
δ > 0 ("effect" rows): A is better by ≈ 0.03 in accuracy; the true difference on a simulation's items,
E_v mean_i [expit(l_i + δ + v) − expit(l_i + v)], is computed by Gauss–Hermite quadrature, and
coverage is how often an interval contains it.

Tests at alpha = 0.05, each exactly as lorikit.analysis.stats computes it:
- run-level t: ``compare_runs`` — one-sample t-test / t-interval of the n per-seed differences;
- bootstrap: ``paired_bootstrap(a, b, n_boot=2000, seed=0)`` (items and seeds resampled, percentile
  interval) — the study's previous test; its fixed seed makes its resampling indices the same in
  every simulation, so they are drawn once and applied to all simulations as one matrix product;
- McNemar: ``mcnemar_exact`` flattened over seeds × items.
The vectorised versions are checked against the library functions on the first simulations of
every cell (the script stops on any mismatch). Prints a table and writes the JSON with the load
average (the machine may be shared; the numbers do not depend on it, only the wall time does).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import special, stats as sps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lorikit.analysis.stats import compare_runs, mcnemar_exact, paired_bootstrap  # noqa: E402
from lorikit.utils.atomic import atomic_write_json  # noqa: E402

ITEMS, ALPHA, N_BOOT = 300, 0.05, 2000
DIFFICULTY = (0.8, 1.5)  # logit mean, sd
RUN_SDS = (0.0, 0.02, 0.05, 0.1)
SEEDS = (3, 5)
EFFECT = 0.03  # accuracy difference of the "effect" rows
CHECKED = 8  # simulations per cell compared with the library functions


def slope(rng: np.random.Generator) -> float:
    """Mean of p(1 − p) over the item distribution: d accuracy / d logit, to put τ and δ on the logit scale."""
    p = special.expit(rng.normal(*DIFFICULTY, size=200_000))
    return float((p * (1 - p)).mean())


def simulate(rng, sims: int, seeds: int, tau: float, delta: float):
    """Item difficulties (sims, items), outcomes (sims, 2, seeds, items) of A (index 0) and B, and
    each run's expected accuracy on its items (sims, 2, seeds)."""
    difficulty = rng.normal(*DIFFICULTY, size=(sims, ITEMS))
    logit = difficulty[:, None, None, :] + tau * rng.normal(size=(sims, 2, seeds, 1))
    logit[:, 0] += delta
    p = special.expit(logit)
    y = (rng.random(p.shape) < p).astype(float)
    return difficulty, y, p.mean(axis=-1)


def true_difference(difficulty: np.ndarray, tau: float, delta: float) -> np.ndarray:
    """E over run effects v ~ N(0, τ²) of mean_i expit(l_i + δ + v) − expit(l_i + v): the difference
    a new pair of runs has in expectation on these items (what compare_runs estimates)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    v = tau * nodes
    a = special.expit(difficulty[..., None] + delta + v) @ weights
    b = special.expit(difficulty[..., None] + v) @ weights
    return (a - b).mean(axis=-1)


def run_t(d: np.ndarray):
    """compare_runs, vectorised over simulations: (p, low, high, mde) from per-seed differences (sims, seeds)."""
    from statsmodels.stats.power import TTestPower

    n = d.shape[1]
    mean, sd = d.mean(axis=1), d.std(axis=1, ddof=1)
    se = sd / np.sqrt(n)
    half = sps.t.ppf(1 - ALPHA / 2, n - 1) * se
    flat = np.ptp(d, axis=1) == 0  # identical differences in every run: compare_runs' limits (p 0 or 1, no MDE)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    p = np.where(flat, np.where(mean == 0, 1.0, 0.0), p)
    es = TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA, power=0.8, alternative="two-sided")
    return p, mean - half, mean + half, np.where(flat, np.nan, sd * es)


def bootstrap_indices(seeds: int):
    """paired_bootstrap(n_boot=N_BOOT, seed=0)'s resampling: item counts per replicate (N_BOOT, items)
    and the resampled seeds (N_BOOT, seeds), drawn exactly as it draws them."""
    rng = np.random.default_rng(0)
    item_idx = rng.integers(0, ITEMS, size=(N_BOOT, ITEMS))
    seed_idx = rng.integers(0, seeds, size=(N_BOOT, seeds))
    counts = np.zeros((N_BOOT, ITEMS))
    np.add.at(counts, (np.arange(N_BOOT)[:, None], item_idx), 1.0)
    return counts, seed_idx


def bootstrap(diff: np.ndarray, counts: np.ndarray, seed_idx: np.ndarray, chunk: int = 250):
    """paired_bootstrap's percentile interval, vectorised: diff (sims, seeds, items) -> (low, high)."""
    lows, highs = [], []
    for start in range(0, len(diff), chunk):
        part = diff[start:start + chunk]
        # one 2-D product (a stacked 3-D matmul is ~30x slower); sums of integers: exact, as in the library
        per_seed = (part.reshape(-1, ITEMS) @ counts.T / ITEMS).reshape(*part.shape[:2], N_BOOT)  # chunk, seeds, boot
        boots = per_seed[:, seed_idx, np.arange(N_BOOT)[:, None]].mean(axis=-1)  # (chunk, n_boot)
        low, high = np.quantile(boots, [ALPHA / 2, 1 - ALPHA / 2], axis=1)
        lows.append(low)
        highs.append(high)
    return np.concatenate(lows), np.concatenate(highs)


def mcnemar(y: np.ndarray) -> np.ndarray:
    """mcnemar_exact flattened over seeds × items, vectorised: two-sided exact p per simulation."""
    a, b = y[:, 0] > 0.5, y[:, 1] > 0.5
    n01, n10 = (a & ~b).sum(axis=(1, 2)), (~a & b).sum(axis=(1, 2))
    n = n01 + n10
    return np.where(n > 0, np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(n01, n10), n, 0.5)), 1.0)


def check_against_library(y, t, boot, mc) -> None:
    """The vectorised tests must be the library's tests: same p, same interval, on the first simulations."""
    for s in range(min(CHECKED, len(y))):
        cr = compare_runs(y[s, 0], y[s, 1], ALPHA)
        assert np.allclose([cr.p, cr.low, cr.high, cr.mde], [t[0][s], t[1][s], t[2][s], t[3][s]],
                           rtol=1e-9, atol=1e-12, equal_nan=True), s
        pb = paired_bootstrap(y[s, 0], y[s, 1], n_boot=N_BOOT, seed=0)
        assert np.allclose([pb.low, pb.high], [boot[0][s], boot[1][s]], atol=1e-12), (s, pb, boot[0][s], boot[1][s])
        assert np.isclose(mcnemar_exact(y[s, 0], y[s, 1]).p_value, mc[s], rtol=1e-9), s


def cell(rng, sims: int, seeds: int, run_sd: float, effect: float, k: float, boot_idx) -> dict:
    tau, delta = run_sd / k, effect / k
    difficulty, y, expected = simulate(rng, sims, seeds, tau, delta)
    truth = true_difference(difficulty, tau, delta) if delta else np.zeros(sims)
    diff = y[:, 0] - y[:, 1]
    t = run_t(diff.mean(axis=2))
    boot = bootstrap(diff, *boot_idx)
    mc = mcnemar(y)
    check_against_library(y, t, boot, mc)

    def share(x):
        return round(float(np.mean(x)), 4)
    return {"seeds": seeds, "items": ITEMS, "run_sd_target": run_sd, "tau_logit": round(tau, 4),
            "run_sd_measured": round(float(np.sqrt(expected.var(axis=2, ddof=1).mean())), 4),
            "true_difference": round(float(truth.mean()), 4), "sims": sims,
            "reject_t": share(t[0] < ALPHA), "reject_bootstrap": share((boot[0] > 0) | (boot[1] < 0)),
            "reject_mcnemar": share(mc < ALPHA),
            "coverage_t": share((t[1] <= truth) & (truth <= t[2])),
            "coverage_bootstrap": share((boot[0] <= truth) & (truth <= boot[1])),
            "width_t": round(float(np.median(t[2] - t[1])), 4),
            "width_bootstrap": round(float(np.median(boot[1] - boot[0])), 4),
            "mde_t": round(float(np.nanmedian(t[3])), 4), "flat_runs": share(np.ptp(diff.mean(axis=2), axis=1) == 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulations per cell")
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "stats_fpr.json"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    load, t0, cpu0 = os.getloadavg(), time.time(), time.process_time()
    k = slope(rng)
    rows = []
    for seeds in SEEDS:
        boot_idx = bootstrap_indices(seeds)
        for effect in (0.0, EFFECT):
            for run_sd in RUN_SDS:
                rows.append(cell(rng, args.sims, seeds, run_sd, effect, k, boot_idx))
                print(f"  {seeds} seeds, effect {effect}, run sd {run_sd}: done "
                      f"({time.process_time() - cpu0:.0f} s CPU)",
                      file=sys.stderr, flush=True)
    head = (f"{'seeds':>5} {'effect':>6} {'run sd':>13} {'t rej':>6} {'boot rej':>8} {'McN rej':>7} "
            f"{'t cover':>7} {'boot cover':>10} {'t width':>7} {'boot width':>10} {'t MDE':>6}")
    print(f"alpha {ALPHA}, {ITEMS} items, {args.sims} simulations per row; rej = share rejecting H0 "
          f"(false-positive rate when effect = 0, power otherwise)")
    print(head)
    for r in rows:
        print(f"{r['seeds']:>5} {r['true_difference']:>6.3f} {r['run_sd_target']:>5.2f} ({r['run_sd_measured']:.3f}) "
              f"{r['reject_t']:>6.3f} {r['reject_bootstrap']:>8.3f} {r['reject_mcnemar']:>7.3f} "
              f"{r['coverage_t']:>7.3f} "
              f"{r['coverage_bootstrap']:>10.3f} {r['width_t']:>7.3f} {r['width_bootstrap']:>10.3f} {r['mde_t']:>6.3f}")
    wall, cpu = time.time() - t0, time.process_time() - cpu0
    print(f"\n{wall:.0f} s wall, {cpu:.0f} s CPU; load average at start {load[0]:.2f}, now {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    atomic_write_json(args.json, {"alpha": ALPHA, "items": ITEMS, "n_boot": N_BOOT, "difficulty_logit": DIFFICULTY,
                                  "sims_per_row": args.sims, "seed": args.seed, "rows": rows,
                                  "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_average_at_start": load,
                                  "load_average_at_end": os.getloadavg(), "python": platform.python_version(),
                                  "numpy": np.__version__})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
