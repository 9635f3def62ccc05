"""Two ways to run a study's trainings on one machine, side by side and alternating.

    python bench/bench_study_workers.py [--tasks pair-max parity] [--steps 12] [--rounds 2] \
        [--out bench/results/study_workers.json]

- ``sequential``: one process after another, each with every core's thread (a one-process study);
- ``workers``: the same trainings at once, one process per training with cores // N threads each
  (``lorikit study --workers N``).

Each training is ``lorikit train --data builtin:TASK --method lora`` at the study's batch (8) in
bfloat16 for ``--steps`` steps, its own process (model load included, as a study stage). The arms
alternate which goes first in each round. The table gives each arm's wall seconds per round and the
last line ``speed-up N.NN× (sequential S s, workers S s)`` (medians over rounds). Pause other jobs
while it runs: a study running beside it takes the cores it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LORIKIT = [sys.executable, "-m", "lorikit"]


def command(task: str, steps: int, out: Path) -> list[str]:
    return [*LORIKIT, "train", "--data", f"builtin:{task}", "--method", "lora", "--max-steps", str(steps),
            "--batch-size", "8", "--dtype", "bfloat16", "--seed", "1", "--out", str(out), "--overwrite"]


def run_arm(arm: str, tasks: list[str], steps: int, work: Path) -> float:
    cores = len(os.sched_getaffinity(0))
    threads = cores if arm == "sequential" else max(1, cores // len(tasks))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    procs = []
    with contextlib.ExitStack() as logs:
        for task in tasks:
            log = logs.enter_context((work / f"{arm}-{task}.log").open("w"))
            p = subprocess.Popen(command(task, steps, work / f"{arm}-{task}"), stdout=log, stderr=subprocess.STDOUT,
                                 env=env)
            if arm == "sequential":
                p.wait()
            procs.append(p)
        codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{arm}: a training failed (exit {max(codes)}); logs in {work}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["pair-max", "parity"])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bench/results/study_workers.json")
    args = ap.parse_args()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("sequential", "workers") if r % 2 == 0 else ("workers", "sequential")
            seconds = {arm: run_arm(arm, args.tasks, args.steps, Path(tmp)) for arm in order}
            rows.append({"round": r + 1, "first": order[0], **seconds})
    seq = statistics.median(r["sequential"] for r in rows)
    par = statistics.median(r["workers"] for r in rows)
    print(f"| round | first | sequential ({len(os.sched_getaffinity(0))} threads) s | workers (one process per "
          f"training) s | ratio |\n|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['round']} | {r['first']} | {r['sequential']:.1f} | {r['workers']:.1f} | "
              f"{r['sequential'] / r['workers']:.2f}× |")
    result = {"tasks": args.tasks, "steps": args.steps, "rounds": rows, "median_sequential_s": seq,
              "median_workers_s": par, "speed_up": seq / par, "load_before": load_before,
              "load_after": os.getloadavg(), "cores": len(os.sched_getaffinity(0))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"load average before {load_before[0]:.2f}, after {result['load_after'][0]:.2f}")
    print(f"speed-up {seq / par:.2f}× (sequential {seq:.0f} s, workers {par:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
