"""A study-shaped workload with the old defaults and the new ones, side by side and alternating.

    python bench/bench_study_speed.py [--quick] [--tasks pair-greater pair-max ...] [--methods lora lori-d] \
        [--workdir runs/study-speed] [--out bench/results/study_speed.json]

Each unit is one (task, method): ``lorikit train`` to convergence under the study's budget rule
(dev loss every ``--eval-every`` steps on a carved dev split, stop on a plateau or at the cap, best
step kept), then ``lorikit eval`` of the adapter on the task's first ``--limit`` test items (choice
tasks by log-likelihood, as the study scores them). Every training and evaluation is its own
process, as in a study. The two arms differ only in their defaults:

- old: ``--dtype float32`` (lorikit's default before ``--dtype auto``);
- new: lorikit's current defaults (``--dtype auto``: bfloat16 on a CPU with native bf16).

Units alternate which arm runs first, so load from other jobs falls on both. The table gives each
unit's wall seconds and accuracy per arm; the last line is
``speed-up N.NN× (old S s, new S s; accuracy old A, new A)`` (accuracies pooled over units).
``--quick``: two choice tasks, LoRA, a 10-step cap and 50 test items.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

from lorikit.data import BUILTIN_TASKS
from lorikit.study.config import DEFAULT_TASKS, StudyConfig

STUDY = {f.name: f.default for f in fields(StudyConfig)}
LORIKIT = [sys.executable, "-m", "lorikit"]
ARMS = {"old": ["--dtype", "float32"], "new": []}


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f"{' '.join(cmd[2:4])} … failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def unit(args, task: str, method: str, arm: str, work: Path) -> dict:
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
             "--out", str(folder / "adapter"), *ARMS[arm]]
    evaluate = [*LORIKIT, "eval", "--model", args.model, "--adapter", str(folder / "adapter"), "--task", "builtin",
                "--data", f"builtin:{task}:test", "--builtin-rows", str(max(args.limit, 200)), "--limit", str(args.limit),
                "--batch-size", str(STUDY["eval_batch_size"]), "--max-new-tokens", str(STUDY["max_new_tokens"]),
                "--out", str(folder / "result.json"), *ARMS[arm]]
    if BUILTIN_TASKS[task].choice:
        evaluate += ["--scoring", STUDY["scoring"]]
    train_s = run(train, folder / "train.log")
    eval_s = run(evaluate, folder / "eval.log")
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
    rows, load = [], [os.getloadavg()]
    for i, (task, method) in enumerate((t, m) for t in args.tasks for m in args.methods):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        row = {"task": task, "method": method, "first": order[0]}
        for arm in order:
            row[arm] = unit(args, task, method, arm, work)
        rows.append(row)
        load.append(os.getloadavg())
        print(f"{task:14} {method:8} old {row['old']['seconds']:7.1f} s ({row['old']['dtype']}, acc "
              f"{row['old']['correct']}/{row['old']['n']})   new {row['new']['seconds']:7.1f} s ({row['new']['dtype']}, "
              f"acc {row['new']['correct']}/{row['new']['n']})   {row['old']['seconds'] / row['new']['seconds']:.2f}×",
              flush=True)
    total = {arm: sum(r[arm]["seconds"] for r in rows) for arm in ARMS}
    acc = {arm: sum(r[arm]["correct"] for r in rows) / sum(r[arm]["n"] for r in rows) for arm in ARMS}
    speedup = total["old"] / total["new"]
    settings = {k: getattr(args, k) for k in ("quick", "tasks", "methods", "model", "max_steps", "eval_every",
                                              "dev_limit", "rows", "limit")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": settings, "rows": rows, "seconds": total, "accuracy": acc,
                                          "speedup": round(speedup, 3), "load_average": load}, indent=2) + "\n")
    print(f"speed-up {speedup:.2f}× (old {total['old']:.0f} s, new {total['new']:.0f} s; "
          f"accuracy old {acc['old']:.3f}, new {acc['new']:.3f})")


if __name__ == "__main__":
    main()
