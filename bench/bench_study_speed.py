"""A study-shaped workload with the old defaults and the new ones, side by side and alternating.

    python bench/bench_study_speed.py [--quick] [--tasks pair-greater pair-max ...] [--methods lora lori-d] \
        [--workdir runs/study-speed] [--out bench/results/study_speed.json]

Each unit is one (task, method): a training to convergence under the study's budget rule (dev loss
every ``--eval-every`` steps on a carved dev split, stop on a plateau — ``min_delta`` as the study's —
or at the cap, best step kept),
then an evaluation of the adapter on the task's first ``--limit`` test items (choice tasks by
log-likelihood, as the study scores them). The two arms:

- old: lorikit's defaults before this wave — ``--dtype float32``, every training and evaluation its
  own ``lorikit train`` / ``lorikit eval`` process (one adapter per process), one unit after another
  with torch's default threads;
- new: as ``lorikit study --workers N`` runs a study now — lorikit's current defaults (``--dtype
  auto``: bfloat16 on a CPU with native bf16) and the study's ``shared_prefix`` (each batch's shared
  prompt tokens run once), the units' stages written as one recipe and shared among ``--workers``
  processes (cores // workers threads each), each running its stages in one ``lorikit run`` process,
  which imports once and reads the base model once (``keep_base_loaded``).

Rounds alternate which arm runs first (``--rounds``), so load from other jobs falls on both. The
table gives each arm's wall seconds per round and each unit's seconds (old: the two processes'
wall time; new: the two stages' own time inside their process) and accuracy; the last line is
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

import yaml
from scipy.stats import binomtest

from lorikit.data import BUILTIN_TASKS
from lorikit.pipeline.runner import STAGE_RECORD
from lorikit.study.config import DEFAULT_TASKS, StudyConfig

STUDY = {f.name: f.default for f in fields(StudyConfig)}
LORIKIT = [sys.executable, "-m", "lorikit"]
ARMS = ("old", "new")
OLD = ["--dtype", "float32"]  # what the old arm adds to `lorikit train` / `lorikit eval`


def run(cmd: list[str], log: Path, env: dict) -> float:
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        raise SystemExit(f"{' '.join(cmd[2:4])} … failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def old_unit(args, task: str, method: str, work: Path, env: dict) -> dict:
    """Train and evaluate one adapter the old way, one process each: (seconds, accuracy, dtype used)."""
    folder = work / f"old-{method}-{task}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lr = STUDY["lori_s_lr"] if method == "lori-s" else STUDY["lr"]
    train = [*LORIKIT, "train", "--model", args.model, "--method", method, "--data", f"builtin:{task}",
             "--seed", "1", "--rank", str(STUDY["rank"]), "--dropout", str(STUDY["dropout"]), "--lr", str(lr),
             "--batch-size", str(STUDY["batch_size"]), "--max-steps", str(args.max_steps),
             "--eval-every", str(args.eval_every), "--patience", str(STUDY["patience"]),
             "--min-delta", str(STUDY["min_delta"]),
             "--dev-fraction", str(STUDY["dev_fraction"]), "--dev-limit", str(args.dev_limit),
             "--builtin-rows", str(args.rows), "--max-length", str(STUDY["max_length"]),
             "--out", str(folder / "adapter"), *OLD]
    evaluate = [*LORIKIT, "eval", "--model", args.model, "--adapter", str(folder / "adapter"), "--task", "builtin",
                "--data", f"builtin:{task}:test", "--builtin-rows", str(max(args.limit, 200)), "--limit", str(args.limit),
                "--batch-size", str(STUDY["eval_batch_size"]), "--max-new-tokens", str(STUDY["max_new_tokens"]),
                "--out", str(folder / "result.json"), *OLD]
    if BUILTIN_TASKS[task].choice:
        evaluate += ["--scoring", STUDY["scoring"]]
    train_s = run(train, folder / "train.log", env)
    eval_s = run(evaluate, folder / "eval.log", env)
    return unit_record(folder / "adapter", folder / "result.json", train_s, eval_s)


def unit_record(adapter: Path, result_file: Path, train_s: float, eval_s: float) -> dict:
    result = json.loads(result_file.read_text())
    meta = json.loads((adapter / "lorikit.json").read_text())
    return {"seconds": round(train_s + eval_s, 1), "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
            "steps": meta["train"]["steps"], "correct": int(result["correct"]), "n": int(result["n"]),
            "dtype": result["settings"]["dtype"],
            "outcomes": {str(r["id"]): int(bool(r["correct"])) for r in result["records"]}}  # per item, for pairing


def discordant(rounds: list[dict]) -> tuple[int, int]:
    """Items right in only the old arm's adapter, and only in the new one's (same unit, same round)."""
    only_old = only_new = 0
    for row in rounds:
        for o, n in zip(row["old"]["units"], row["new"]["units"]):
            if o["outcomes"].keys() != n["outcomes"].keys():
                raise SystemExit(f"{o['task']}: the arms scored different items")
            only_old += sum(o["outcomes"][i] and not n["outcomes"][i] for i in o["outcomes"])
            only_new += sum(n["outcomes"][i] and not o["outcomes"][i] for i in o["outcomes"])
    return only_old, only_new


def new_recipe(args, units: list[tuple[str, str]], work: Path) -> dict:
    """The units as one recipe with a study's stage settings (lorikit's defaults, the study's shared prefix)."""
    train = {"model": args.model, "rank": STUDY["rank"], "dropout": STUDY["dropout"], "batch_size": STUDY["batch_size"],
             "max_steps": args.max_steps, "eval_every": args.eval_every, "patience": STUDY["patience"],
             "min_delta": STUDY["min_delta"],
             "dev_fraction": STUDY["dev_fraction"], "dev_limit": args.dev_limit, "builtin_rows": args.rows,
             "max_length": STUDY["max_length"], "shared_prefix": STUDY["shared_prefix"]}
    evaluate = {"model": args.model, "limit": args.limit, "batch_size": STUDY["eval_batch_size"],
                "max_new_tokens": STUDY["max_new_tokens"], "builtin_rows": max(args.limit, 200)}
    stages: dict = {}
    for task, method in units:
        lr = STUDY["lori_s_lr"] if method == "lori-s" else STUDY["lr"]
        stages[f"train-{method}-{task}"] = {"kind": "train", "method": method, "data": f"builtin:{task}", "seed": 1,
                                            "lr": lr}
        stages[f"eval-{method}-{task}"] = {"kind": "eval", "adapter": f"$train-{method}-{task}", "task": "builtin",
                                           "data": f"builtin:{task}:test",
                                           **({"scoring": STUDY["scoring"], "shared_prefix": STUDY["shared_prefix"]}
                                              if BUILTIN_TASKS[task].choice else {})}
    return {"name": "study-speed-new", "workdir": str(work.resolve()), "defaults": {"train": train, "eval": evaluate},
            "stages": stages}


def new_arm(args, units: list[tuple[str, str]], work: Path, env: dict) -> list[dict]:
    """The units' stages shared among ``args.workers`` `lorikit run` processes, as a study's workers run them."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    recipe = work.with_name(work.name + "-recipe.yaml")  # not in the workdir: lorikit never writes into its inputs
    recipe.write_text(yaml.safe_dump(new_recipe(args, units, work), sort_keys=False))
    shares = [units[k::args.workers] for k in range(args.workers)]

    def worker(k: int) -> float:
        only = [flag for task, method in shares[k] for flag in ("--only", f"train-{method}-{task}",
                                                                  "--only", f"eval-{method}-{task}")]
        return run([*LORIKIT, "run", str(recipe), *only], work / f"worker-{k}.log", env)

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(worker, [k for k in range(args.workers) if shares[k]]))

    def seconds(stage: str) -> float:
        return json.loads((work / stage / STAGE_RECORD).read_text())["seconds"]

    return [unit_record(work / f"train-{m}-{t}", work / f"eval-{m}-{t}" / "result.json", seconds(f"train-{m}-{t}"),
                        seconds(f"eval-{m}-{t}")) for t, m in units]


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
            if arm == "old":
                results = [old_unit(args, t, m, work / f"round{r + 1}", env) for t, m in units]
            else:
                results = new_arm(args, units, work / f"round{r + 1}" / "new", env)
            row[arm] = {"seconds": round(time.perf_counter() - t0, 1), "threads": threads[arm],
                        "at_once": parallel[arm], "units": [{"task": t, "method": m, **res}
                                                            for (t, m), res in zip(units, results)]}
        rounds.append(row)
        load.append(os.getloadavg())
        print(f"round {r + 1} ({order[0]} first): old {row['old']['seconds']:7.1f} s   new {row['new']['seconds']:7.1f} s"
              f"   {row['old']['seconds'] / row['new']['seconds']:.2f}×", flush=True)
    print("\n| round | first | old: float32, a process per stage, threads | new: bf16, workers × threads | old s | new s | "
          "old / new |\n|---|---|---|---|---:|---:|---:|")
    for row in rounds:
        print(f"| {row['round']} | {row['first']} | 1 × {row['old']['threads']} | {row['new']['at_once']} × "
              f"{row['new']['threads']} | {row['old']['seconds']} | {row['new']['seconds']} | "
              f"{row['old']['seconds'] / row['new']['seconds']:.2f}× |")
    print("\n| unit | old: train + eval s (processes), acc | new: train + eval s (stages), acc |\n|---|---|---|")
    for row in rounds:
        for o, n in zip(row["old"]["units"], row["new"]["units"]):
            print(f"| round {row['round']} {o['task']} {o['method']} | {o['train_s']} + {o['eval_s']}, "
                  f"{o['correct']}/{o['n']} ({o['dtype']}) | {n['train_s']} + {n['eval_s']}, {n['correct']}/{n['n']} "
                  f"({n['dtype']}) |")
    total = {arm: sum(row[arm]["seconds"] for row in rounds) for arm in ARMS}
    acc = {arm: sum(u["correct"] for row in rounds for u in row[arm]["units"]) /
           sum(u["n"] for row in rounds for u in row[arm]["units"]) for arm in ARMS}
    speedup = total["old"] / total["new"]
    only_old, only_new = discordant(rounds)
    mcnemar = binomtest(only_old, only_old + only_new).pvalue if only_old + only_new else 1.0
    settings = {k: getattr(args, k) for k in ("quick", "tasks", "methods", "model", "max_steps", "eval_every",
                                              "dev_limit", "rows", "limit", "workers", "rounds")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": settings, "rounds": rounds, "seconds": total, "accuracy": acc,
                                          "speedup": round(speedup, 3), "load_average": load,
                                          "paired": {"only_old": only_old, "only_new": only_new,
                                                     "mcnemar_exact_p": mcnemar}}, indent=2) + "\n")
    print(f"load average before {load[0][0]:.2f}, after {load[-1][0]:.2f}")
    print(f"paired items: right only in old {only_old}, only in new {only_new} (exact McNemar p = {mcnemar:.3g}; "
          f"these adapters on these items)")
    print(f"speed-up {speedup:.2f}× (old {total['old']:.0f} s, new {total['new']:.0f} s; "
          f"accuracy old {acc['old']:.3f}, new {acc['new']:.3f})")


if __name__ == "__main__":
    main()
