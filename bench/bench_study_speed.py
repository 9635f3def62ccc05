"""A study-shaped workload with the old defaults and the new ones, side by side and alternating.

    python bench/bench_study_speed.py [--quick] [--tasks pair-greater pair-max ...] [--methods lora lori-d] \
        [--workdir runs/study-speed] [--out bench/results/study_speed.json]

Each unit is one (task, method): ``lorikit train`` to convergence under the study's budget rule
(dev loss every ``--eval-every`` steps on a carved dev split, stop on a plateau or at the cap, best
step kept), then ``lorikit eval`` of the adapter on the task's first ``--limit`` test items (choice
tasks by log-likelihood, as the study scores them). Every training and evaluation is its own
process, as in a study. The two arms differ only in their defaults:

- old: ``--dtype float32`` (lorikit's default before ``--dtype auto``), one unit after another with
  torch's default threads (a one-process study);
- new: lorikit's current defaults (``--dtype auto``: bfloat16 on a CPU with native bf16) and the
  study's ``--shared-prefix`` (each batch's shared prompt tokens run once), ``--workers`` units at a
  time with cores // workers threads each, as ``lorikit study --workers N`` runs seeds.

Rounds alternate which arm runs first (``--rounds``), so load from other jobs falls on both. The
table gives each arm's wall seconds per round and each unit's accuracy; the last line is
``speed-up N.NN× (old S s, new S s; accuracy old A, new A)`` (wall seconds summed over rounds,
accuracies pooled over units). ``--quick``: two choice tasks, LoRA, a 10-step cap, 50 test items.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

from lorikit.data import BUILTIN_TASKS
from lorikit.study.config import DEFAULT_TASKS, StudyConfig

STUDY = {f.name: f.default for f in fields(StudyConfig)}
LORIKIT = [sys.executable, "-m", "lorikit"]
# what each arm adds to `lorikit train` / `lorikit eval`; the new arm trains as a study does now
# (loglik: added to the evaluations scored by log-likelihood)
SHARED = ["--shared-prefix"] if STUDY["shared_prefix"] else []
ARMS = {"old": {"train": ["--dtype", "float32"], "eval": ["--dtype", "float32"], "loglik": []},
        "new": {"train": SHARED, "eval": [], "loglik": SHARED}}


def run(cmd: list[str], log: Path, env: dict) -> float:
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        raise SystemExit(f"{' '.join(cmd[2:4])} … failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def unit(args, task: str, method: str, arm: str, work: Path, env: dict) -> dict:
    """Train and evaluate one adapter with ``arm``'s defaults: (seconds, accuracy, dtype used)."""
    folder = work / f"{arm}-{method}-{task}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lr = STUDY["lori_s_lr"] if method == "lori-s" else STUDY["lr"]
    train = [*LORIKIT, "train", "--model", args.model, "--method", method, "--data", f"builtin:{task}",
             "--seed", "1", "--rank", str(STUDY["rank"]), "--dropout", str(STUDY["dropout"]), "--lr", str(lr),
             "--batch-size", str(STUDY["batch_size"]), "--max-steps", str(args.max_steps),
             "--eval-every", str(args.eval_every), "--patience", str(STUDY["patience"]),
             "--dev-fraction", str(STUDY["dev_fraction"]), "--dev-limit", str(args.dev_limit),
             "--builtin-rows", str(args.rows), "--max-length", str(STUDY["max_length"]),
             "--out", str(folder / "adapter"), *ARMS[arm]["train"]]
    evaluate = [*LORIKIT, "eval", "--model", args.model, "--adapter", str(folder / "adapter"), "--task", "builtin",
                "--data", f"builtin:{task}:test", "--builtin-rows", str(max(args.limit, 200)), "--limit", str(args.limit),
                "--batch-size", str(STUDY["eval_batch_size"]), "--max-new-tokens", str(STUDY["max_new_tokens"]),
                "--out", str(folder / "result.json"), *ARMS[arm]["eval"]]
    if BUILTIN_TASKS[task].choice:
        evaluate += ["--scoring", STUDY["scoring"], *ARMS[arm]["loglik"]]
    train_s = run(train, folder / "train.log", env)
    eval_s = run(evaluate, folder / "eval.log", env)
    result = json.loads((folder / "result.json").read_text())
    meta = json.loads((folder / "adapter" / "lorikit.json").read_text())
    return {"seconds": round(train_s + eval_s, 1), "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
            "steps": meta["train"]["steps"], "correct": int(result["correct"]), "n": int(result["n"]),
            "dtype": result["settings"]["dtype"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two choice tasks, LoRA, 10-step cap, 50 test items")
    p.add_argument("--tasks", nargs="+", default=None, help="built-in tasks (default: the study's)")
    p.add_argument("--methods", nargs="+", default=None, help="adapter methods (default: lora lori-d)")
    p.add_argument("--model", default=STUDY["model"])
    p.add_argument("--max-steps", type=int, default=None, help=f"step cap (default: the study's, {STUDY['max_steps']})")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--dev-limit", type=int, default=None)
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="test items per task")
    p.add_argument("--workers", type=int, default=2, help="units the new arm runs at once")
    p.add_argument("--rounds", type=int, default=2, help="rounds, alternating which arm goes first")
    p.add_argument("--workdir", default="runs/study-speed")
    p.add_argument("--out", default="bench/results/study_speed.json")
    args = p.parse_args()
    quick = {"tasks": ["pair-greater", "pair-max"], "methods": ["lora"], "max_steps": 10, "eval_every": 5,
             "dev_limit": 16, "rows": 200, "limit": 50}
    full = {"tasks": list(DEFAULT_TASKS), "methods": ["lora", "lori-d"], "max_steps": STUDY["max_steps"],
            "eval_every": STUDY["eval_every"], "dev_limit": STUDY["dev_limit"], "rows": STUDY["builtin_rows"],
            "limit": STUDY["eval_examples"]}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    work = Path(args.workdir)
    units = [(t, m) for t in args.tasks for m in args.methods]
    cores = len(os.sched_getaffinity(0))
    threads = {"old": cores, "new": max(1, cores // args.workers)}
    parallel = {"old": 1, "new": args.workers}
    rounds, load = [], [os.getloadavg()]
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        row: dict = {"round": r + 1, "first": order[0]}
        for arm in order:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads[arm])}
            t0 = time.perf_counter()
            with ThreadPoolExecutor(parallel[arm]) as pool:
                results = list(pool.map(lambda u: unit(args, u[0], u[1], arm, work / f"round{r + 1}", env), units))
            row[arm] = {"seconds": round(time.perf_counter() - t0, 1), "threads": threads[arm],
                        "at_once": parallel[arm], "units": [{"task": t, "method": m, **res}
                                                            for (t, m), res in zip(units, results)]}
        rounds.append(row)
        load.append(os.getloadavg())
        print(f"round {r + 1} ({order[0]} first): old {row['old']['seconds']:7.1f} s   new {row['new']['seconds']:7.1f} s"
              f"   {row['old']['seconds'] / row['new']['seconds']:.2f}×", flush=True)
    print("\n| round | first | old: float32, one at a time, threads | new: bf16, at once, threads | old s | new s | "
          "old / new |\n|---|---|---|---|---:|---:|---:|")
    for row in rounds:
        print(f"| {row['round']} | {row['first']} | 1 × {row['old']['threads']} | {row['new']['at_once']} × "
              f"{row['new']['threads']} | {row['old']['seconds']} | {row['new']['seconds']} | "
              f"{row['old']['seconds'] / row['new']['seconds']:.2f}× |")
    print("\n| unit | old: train + eval s, acc | new: train + eval s, acc |\n|---|---|---|")
    for row in rounds:
        for o, n in zip(row["old"]["units"], row["new"]["units"]):
            print(f"| round {row['round']} {o['task']} {o['method']} | {o['train_s']} + {o['eval_s']}, "
                  f"{o['correct']}/{o['n']} ({o['dtype']}) | {n['train_s']} + {n['eval_s']}, {n['correct']}/{n['n']} "
                  f"({n['dtype']}) |")
    total = {arm: sum(row[arm]["seconds"] for row in rounds) for arm in ARMS}
    acc = {arm: sum(u["correct"] for row in rounds for u in row[arm]["units"]) /
           sum(u["n"] for row in rounds for u in row[arm]["units"]) for arm in ARMS}
    speedup = total["old"] / total["new"]
    settings = {k: getattr(args, k) for k in ("quick", "tasks", "methods", "model", "max_steps", "eval_every",
                                              "dev_limit", "rows", "limit", "workers", "rounds")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": settings, "rounds": rounds, "seconds": total, "accuracy": acc,
                                          "speedup": round(speedup, 3), "load_average": load}, indent=2) + "\n")
    print(f"load average before {load[0][0]:.2f}, after {load[-1][0]:.2f}")
    print(f"speed-up {speedup:.2f}× (old {total['old']:.0f} s, new {total['new']:.0f} s; "
          f"accuracy old {acc['old']:.3f}, new {acc['new']:.3f})")


if __name__ == "__main__":
    main()
