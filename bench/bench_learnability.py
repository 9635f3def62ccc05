"""Can the model learn each built-in task? One LoRA adapter per task, trained with lorikit's own
commands under the study's budget rule, scored on held-out test items with a Wilson interval.

    python bench/bench_learnability.py --tasks words-reverse words-sort [--max-steps 300] \
        [--model smollm2-135m] [--workdir runs/learnability] [--out bench/results/learnability.json]

Per task: ``lorikit train --method lora`` on the task's generated training rows, dev loss every
``--eval-every`` steps on a carved dev split, stop on a plateau (``--patience``) or at the cap
(the best dev step is kept); then ``lorikit eval`` of the base model and of the adapter on the
first ``--limit`` test items (generation; choice tasks by ``--scoring``). The workdir keeps every
adapter and result, and a finished task is reused on the next run, so an interrupted run resumes.
Rows of tasks measured earlier under another budget stay in ``--out`` (each row carries its budget).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

from lorikit.analysis.stats import wilson
from lorikit.data import BUILTIN_TASKS
from lorikit.study.config import StudyConfig

STUDY = {f.name: f.default for f in fields(StudyConfig)}  # the study's budget is the default here

LORIKIT = [sys.executable, "-m", "lorikit"]


def run(cmd: list[str], log: Path) -> None:
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f"{' '.join(cmd[:3])} … failed (exit {rc}); see {log}")


def evaluate(args, task: str, adapter: Path | None, out: Path) -> dict:
    if not out.is_file():
        cmd = [*LORIKIT, "eval", "--model", args.model, "--task", "builtin", "--data", f"builtin:{task}:test",
               "--builtin-rows", str(args.test_rows), "--limit", str(args.limit),
               "--max-new-tokens", str(args.max_new_tokens), "--out", str(out)]
        if adapter is not None:
            cmd += ["--adapter", str(adapter)]
        if BUILTIN_TASKS[task].choice:
            cmd += ["--scoring", args.scoring]
        run(cmd, out.with_suffix(".log"))
    result = json.loads(out.read_text())
    correct, n = int(result["correct"]), int(result["n"])
    ci = wilson(correct, n)
    return {"correct": correct, "n": n, "accuracy": round(correct / n, 3), "wilson": [round(ci.low, 3), round(ci.high, 3)]}


def budget(args) -> dict:
    return {"max_steps": args.max_steps, "eval_every": args.eval_every, "patience": args.patience,
            "rank": args.rank, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
            "train_rows": args.train_rows, "dropout": args.dropout, "dev_limit": args.dev_limit,
            "max_length": args.max_length}


def measure(args, task: str) -> dict:
    # every setting that changes the adapter or the score is in the names, so a reused output is the same run
    b = budget(args)
    folder = Path(args.workdir) / (f"{task}-s{b['seed']}-r{b['rank']}-lr{b['lr']:g}-b{b['batch_size']}-n{b['train_rows']}-cap{b['max_steps']}"
                                   f"-e{b['eval_every']}-p{b['patience']}-d{b['dropout']:g}-dev{b['dev_limit']}-len{b['max_length']}")
    scored = f"n{args.limit}of{args.test_rows}-t{args.max_new_tokens}" + (f"-{args.scoring}" if BUILTIN_TASKS[task].choice else "")
    start = time.time()
    if not (folder / "lorikit.json").is_file():
        run([*LORIKIT, "train", "--model", args.model, "--data", f"builtin:{task}", "--builtin-rows", str(args.train_rows),
             "--method", "lora", "--rank", str(args.rank), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
             "--max-steps", str(args.max_steps), "--eval-every", str(args.eval_every), "--patience", str(args.patience),
             "--dropout", str(args.dropout), "--max-length", str(args.max_length),
             "--dev-fraction", str(STUDY["dev_fraction"]), "--dev-limit", str(args.dev_limit),
             "--seed", str(args.seed), "--out", str(folder)],
            folder.parent / f"{folder.name}.train.log")
    meta = json.loads((folder / "lorikit.json").read_text())
    es = meta.get("early_stopping") or {}
    row = {"task": task, "budget": b,
           "chosen_step": es.get("chosen_step"), "steps_run": es.get("steps_run"), "stopped": es.get("stopped"),
           "best_dev_loss": es.get("best_dev_loss"), "train_seconds": meta.get("train", {}).get("seconds"),
           "adapter": evaluate(args, task, folder, Path(args.workdir) / f"{folder.name}.{scored}.eval.json"),
           "base": evaluate(args, task, None, Path(args.workdir) / f"{task}-base.{scored}.eval.json")}
    row["seconds"] = round(time.time() - start, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["pair-add", "pair-sub", "words-reverse", "words-sort"],
                    choices=sorted(BUILTIN_TASKS))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--max-steps", type=int, default=STUDY["max_steps"], help="step cap (the study's default)")
    ap.add_argument("--eval-every", type=int, default=STUDY["eval_every"], help="dev loss every N steps (the study's default)")
    ap.add_argument("--patience", type=int, default=STUDY["patience"],
                    help="dev evaluations without a new best before stopping (the study's default)")
    ap.add_argument("--rank", type=int, default=STUDY["rank"])
    ap.add_argument("--lr", type=float, default=STUDY["lr"])
    ap.add_argument("--batch-size", type=int, default=STUDY["batch_size"])
    ap.add_argument("--dropout", type=float, default=STUDY["dropout"])
    ap.add_argument("--dev-limit", type=int, default=STUDY["dev_limit"], help="dev examples per dev-loss evaluation")
    ap.add_argument("--max-length", type=int, default=STUDY["max_length"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-rows", type=int, default=STUDY["builtin_rows"], help="generated training rows (dev is carved from them)")
    ap.add_argument("--test-rows", type=int, default=max(STUDY["eval_examples"], 200))
    ap.add_argument("--limit", type=int, default=STUDY["eval_examples"], help="test items scored per task")
    ap.add_argument("--max-new-tokens", type=int, default=STUDY["max_new_tokens"])
    ap.add_argument("--scoring", default="loglik", choices=["loglik", "generate"])
    ap.add_argument("--workdir", default="runs/learnability")
    ap.add_argument("--out", default="bench/results/learnability.json")
    args = ap.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    earlier = json.loads(out.read_text()).get("rows", []) if out.is_file() else []
    rows = [measure(args, task) for task in args.tasks]
    measured = {(r["task"], json.dumps(r["budget"], sort_keys=True)) for r in rows}
    kept = [r for r in earlier if (r["task"], json.dumps(r.get("budget"), sort_keys=True)) not in measured]
    load = os.getloadavg()
    result = {"what": "learnability of built-in tasks: one LoRA adapter per task (lorikit train, dev plateau or cap), "
                      "lorikit eval of base and adapter on held-out test items, Wilson 95 % intervals",
              "model": args.model, "date": time.strftime("%Y-%m-%d"), "load_average": [round(x, 2) for x in load],
              "rows": kept + rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    print("| task | cap | chosen step | stopped | base [95 %] | adapter [95 %] | n |\n|---|---:|---:|---|---|---|---:|")
    for r in result["rows"]:
        b, a = r["base"], r["adapter"]
        cap = r.get("budget", {}).get("max_steps", "?")
        print(f"| {r['task']} | {cap} | {r.get('chosen_step', '?')} | {r.get('stopped', '?')} | {b['accuracy']:.2f} "
              f"[{b['wilson'][0]:.2f}, {b['wilson'][1]:.2f}] | {a['accuracy']:.2f} [{a['wilson'][0]:.2f}, {a['wilson'][1]:.2f}] | {a['n']} |")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
