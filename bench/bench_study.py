"""Collect a finished (or partly finished) study into bench/results/science.json and print its tables.

    python bench/bench_study.py runs/science [--out bench/results/science.json]

Reads every stage's ``lorikit-stage.json`` (wall seconds per stage, by kind), each training's
``early_stopping`` record (chosen step, steps run, why it stopped), each eval's score and item
count, and ``table/study.json`` when the table stage has run. The machine is shared: the load
average at collection time is recorded beside the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def stage_records(workdir: Path) -> dict[str, dict]:
    out = {}
    for rec in sorted(workdir.glob("*/lorikit-stage.json")):
        out[rec.parent.name] = json.loads(rec.read_text())
    return out


def trainings(workdir: Path) -> dict[str, dict]:
    out = {}
    for meta_file in sorted(workdir.glob("*/lorikit.json")):
        meta = json.loads(meta_file.read_text())
        es = meta.get("early_stopping")
        if es:
            out[meta_file.parent.name] = {k: es[k] for k in ("chosen_step", "steps_run", "stopped", "best_dev_loss")}
            out[meta_file.parent.name]["seconds"] = meta["train"]["seconds"]
    return out


def evals(workdir: Path) -> dict[str, dict]:
    out = {}
    for res in sorted(workdir.glob("eval-*/result.json")):
        r = json.loads(res.read_text())
        out[res.parent.name] = {"score": r.get("score"), "n": r.get("n"), "seconds": r["settings"].get("seconds")}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--out", default="bench/results/science.json")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    stages = stage_records(workdir)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for rec in stages.values():
        by_kind[rec["kind"]].append(rec["seconds"])
    study_file = workdir / "table" / "study.json"
    result = {"workdir": str(workdir), "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
              "cpu_count": os.cpu_count(), "stages_done": len(stages),
              "seconds_by_kind": {k: {"n": len(v), "total": round(sum(v), 1), "mean": round(sum(v) / len(v), 1)}
                                  for k, v in by_kind.items()},
              "trainings": trainings(workdir), "evals": evals(workdir),
              "study": json.loads(study_file.read_text()) if study_file.is_file() else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{workdir}: {len(stages)} stages done; {result['uptime']}")
    print("| kind | stages | total s | mean s |\n|---|---:|---:|---:|")
    for k, v in result["seconds_by_kind"].items():
        print(f"| {k} | {v['n']} | {v['total']} | {v['mean']} |")
    print("\n| training | chosen step | steps run | stopped | best dev loss | s |\n|---|---:|---:|---|---:|---:|")
    for name, t in result["trainings"].items():
        print(f"| {name} | {t['chosen_step']} | {t['steps_run']} | {t['stopped']} | {t['best_dev_loss']:.4f} | {t['seconds']} |")
    print("\n| eval | score | n | s |\n|---|---:|---:|---:|")
    for name, e in result["evals"].items():
        print(f"| {name} | {e['score']:.3f} | {e['n']} | {e['seconds']} |")
    if result["study"] is None:
        print("\n(table stage not finished: no study.json yet)")
    else:
        print("\n" + (workdir / "table" / "table.md").read_text())
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
