"""Issue 18's merge table: every merge method on the same trained adapters, per task, with intervals.

    python bench/bench_merge_table.py --adapters runs/demo/lora-s1-pair-greater runs/demo/lora-s1-pair-max \
        --tasks pair-greater pair-max --label lora-s1 [--search-budget 30]

For two or more single-task adapters (adapter i trained on built-in task ``tasks[i]``), with lorikit's
own commands: evaluates each adapter alone (``single``), then merges them with every method of
``lorikit merge`` at the settings a user gets without tuning (weights 1 and each method's defaults;
``cat`` at the LoRI reference's fixed 0.5; EMR evaluated per task with ``--emr-task``), and, with
``--search-budget N``, ``lorikit merge-search`` (cat weights searched by CMA-ES on the dev split's
NLL, N evaluations) against the fixed 0.5. Every adapter is scored on each task's held-out ``test``
items by log-likelihood (``--items`` per task). Reported per (method, task): accuracy with its Wilson
95 % interval, merged − single with a paired bootstrap interval over the same items, and McNemar's
exact p. Prints a table; writes JSON (default bench/results/merge_table-LABEL.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from lorikit.analysis.stats import mcnemar_exact, paired_bootstrap, wilson  # noqa: E402
from lorikit.eval.result import read_items  # noqa: E402

LORIKIT = [sys.executable, "-m", "lorikit"]
# (row name, merge method, extra flags); weights 1 each unless the flags say otherwise
METHODS = [
    ("cat w=0.5 (fixed)", "cat", ["--weights", "0.5", "0.5"]),
    ("task-arithmetic", "task-arithmetic", []),
    ("linear", "linear", []),
    ("ties", "ties", []),
    ("dare-ties", "dare-ties", []),
    ("dare-linear", "dare-linear", []),
    ("magnitude-prune", "magnitude-prune", []),
    ("knots (inner ties)", "knots", ["--inner", "ties"]),
    ("core-space (inner ties)", "core-space", ["--inner", "ties"]),
    ("tsv-m", "tsv-m", []),
    ("iso-c", "iso-c", []),
    ("iso-cts", "iso-cts", []),
    ("emr", "emr", []),
]


def lorikit(*args: str) -> None:
    proc = subprocess.run([*LORIKIT, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"lorikit {' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def evaluate(adapter: Path, task: str, out: Path, args, emr_task: str | None = None) -> list[int]:
    if not out.exists():
        extra = ["--emr-task", emr_task] if emr_task else []
        lorikit("eval", "--model", args.model, "--adapter", str(adapter), *extra, "--task", "builtin",
                "--data", f"builtin:{task}:test", "--builtin-rows", str(args.items), "--limit", str(args.items),
                "--scoring", "loglik", "--batch-size", "32", "--out", str(out))
    return [r.correct for r in read_items(out)]


def row(name: str, task: str, correct: list[int], single: list[int] | None) -> dict:
    acc = wilson(sum(correct), len(correct))
    rec = {"method": name, "task": task, "accuracy": acc.to_json()}
    if single is not None:
        rec["vs_single"] = paired_bootstrap(correct, single).to_json()
        test = mcnemar_exact(correct, single)
        rec["mcnemar"] = {"only_merged": test.only_a, "only_single": test.only_b, "p": test.p_value}
    return rec


def run(args) -> dict:
    work = Path(args.workdir) / args.label
    work.mkdir(parents=True, exist_ok=True)
    adapters = [Path(a) for a in args.adapters]
    names = [f"t{i}" for i in range(len(adapters))]
    singles = {t: evaluate(a, t, work / f"single-{t}.json", args) for a, t in zip(adapters, args.tasks)}
    rows = [row("single (w=1)", t, singles[t], None) for t in args.tasks]
    seconds = {}
    for name, method, flags in METHODS:
        out = work / f"merge-{method}"
        t0 = time.perf_counter()
        if not out.exists():
            lorikit("merge", *map(str, adapters), "--method", method, "--names", *names, *flags, "--out", str(out))
        seconds[name] = round(time.perf_counter() - t0, 2)
        for i, task in enumerate(args.tasks):
            correct = evaluate(out, task, work / f"eval-{method}-{task}.json", args,
                               emr_task=names[i] if method == "emr" else None)
            rows.append(row(name, task, correct, singles[task]))
    if args.search_budget:
        out = work / "merge-search-cat"
        if not (out / "best.json").exists():  # merge-search resumes from its own log
            lorikit("merge-search", *map(str, adapters), "--dev", *(f"builtin:{t}:dev" for t in args.tasks),
                    "--method", "cat", "--budget", str(args.search_budget), "--limit", "32", "--out", str(out))
        best = json.loads((out / "best.json").read_text())
        for task in args.tasks:
            correct = evaluate(out, task, work / f"eval-search-{task}.json", args)
            rows.append({**row("cat, searched weights", task, correct, singles[task]), "weights": best.get("weights")})
    return {"label": args.label, "adapters": [str(a) for a in adapters], "tasks": args.tasks, "items": args.items,
            "model": args.model, "rows": rows, "merge_seconds": seconds, "load_average": os.getloadavg()}


def print_table(result: dict) -> None:
    tasks = result["tasks"]
    print(f"| method ({result['label']}, n = {result['items']} per task) | "
          + " | ".join(f"{t} acc [95% CI] | Δ vs single [95% CI] (McNemar p)" for t in tasks) + " |")
    print("|---|" + "---|---|" * len(tasks))
    by_method: dict[str, dict] = {}
    for r in result["rows"]:
        by_method.setdefault(r["method"], {})[r["task"]] = r
    for method, per_task in by_method.items():
        cells = []
        for t in tasks:
            r = per_task[t]
            a = r["accuracy"]
            cells.append(f"{a['estimate']:.3f} [{a['low']:.3f}, {a['high']:.3f}]")
            if "vs_single" in r:
                d, p = r["vs_single"], r["mcnemar"]["p"]
                mark = "*" if (d["low"] > 0 or d["high"] < 0) else ""
                cells.append(f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{mark} (p={p:.2g})")
            else:
                cells.append("—")
        print(f"| {method} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapters", nargs="+", required=True)
    ap.add_argument("--tasks", nargs="+", required=True, help="built-in task of each adapter, same order")
    ap.add_argument("--label", required=True)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--search-budget", type=int, default=0)
    ap.add_argument("--workdir", default="runs/merge-table")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if len(args.tasks) != len(args.adapters):
        raise SystemExit("--tasks: one built-in task per adapter")
    result = run(args)
    print_table(result)
    out = Path(args.out or HERE / "results" / f"merge_table-{args.label}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
