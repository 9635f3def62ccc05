"""A study's trainings one by one vs together (``train_together``): wall time side by side.

    python bench/bench_train_together.py [--tasks pair-max parity] [--methods lora] [--steps 10] \
        [--rounds 2] [--workdir runs/bench-together] [--out bench/results/train_together.json]

The same small study (SmolLM2-135M by default, float32, one seed, no shared prompt prefix — a joint
run does not take it) runs with ``train_together: false`` and ``true`` in fresh workdirs, the arms
alternating which goes first in each round, each in a process of its own (so both pay the same start-up:
imports, reading the model). Per arm and round: the study's wall time, the summed
wall time its training stages recorded (a joint run's time is shared out over its members), and the
single adapters' accuracies (joint and solo runs agree to float tolerance, so these should match).
Run it on an otherwise idle machine: the table says the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lorikit.study import StudyConfig, run_study


def arm(args, together: bool, workdir: Path) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)  # this script's own scratch folder
    cfg = StudyConfig(model=args.model, tasks={t: None for t in args.tasks}, methods=args.methods, seeds=[1],
                      weights=[0.5], pair_weight=None, max_steps=args.steps, eval_every=max(1, args.steps // 2),
                      patience=3, dev_limit=16, dev_examples=10, eval_examples=args.items, builtin_rows=400,
                      shared_prefix=False, dtype="float32", train_together=together, workdir=str(workdir))
    t0 = time.perf_counter()
    run_study(cfg, echo=lambda line: None)
    wall = time.perf_counter() - t0
    records = [json.loads(p.read_text()) for p in workdir.glob("*/lorikit-stage.json")]
    train = sum(r["seconds"] for r in records if r["kind"] == "train")
    study = json.loads((workdir / "table" / "study.json").read_text())
    single = {f"{r['method']}/{r['task']}": r["accuracy"]["mean"] for r in study["single"]}
    return {"together": together, "wall_s": round(wall, 1), "train_stage_s": round(train, 1), "single": single}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", nargs="+", default=["pair-max", "parity"])
    p.add_argument("--methods", nargs="+", default=["lora"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--items", type=int, default=20, help="test items per task")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workdir", default="runs/bench-together")
    p.add_argument("--out", default="bench/results/train_together.json")
    p.add_argument("--one-arm", choices=["solo", "together"], help=argparse.SUPPRESS)  # a child process
    p.add_argument("--arm-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one_arm:
        print("ARM " + json.dumps(arm(args, args.one_arm == "together", Path(args.arm_dir))))
        return
    load_before = os.getloadavg()
    rows = []
    for rnd in range(args.rounds):
        order = (False, True) if rnd % 2 == 0 else (True, False)
        for together in order:
            name = "together" if together else "solo"
            child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one-arm", name,
                                    "--arm-dir", str(Path(args.workdir) / f"r{rnd + 1}-{name}")],
                                   capture_output=True, text=True, check=True)
            result = json.loads(next(x for x in child.stdout.splitlines() if x.startswith("ARM "))[4:])
            row = {"round": rnd + 1, "first": "together" if order[0] else "one by one", **result}
            rows.append(row)
            print(json.dumps(row))
            write(args, rows, load_before)  # after each arm: a run cut short keeps what finished
    out = write(args, rows, load_before)
    solo, joint = arms(rows)
    print("| round | first | one by one: wall s (train stages s) | together: wall s (train stages s) | ratio |")
    print("|---|---|---:|---:|---:|")
    for a, b in zip(solo, joint):
        print(f"| {a['round']} | {a['first']} | {a['wall_s']} ({a['train_stage_s']}) | {b['wall_s']} "
              f"({b['train_stage_s']}) | {a['wall_s'] / b['wall_s']:.2f}x |")
    print(f"load average before {load_before[0]:.2f}, after {out['load_after'][0]:.2f}; "
          f"single-adapter accuracies identical in both arms: {out['same_single_accuracies']}")
    print(f"speed-up {out['speed_up']:.2f}x (one by one {out['solo_s']:.0f} s, together {out['together_s']:.0f} s)")


def arms(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The one-by-one rows and the together rows, each in round order."""
    return [r for r in rows if not r["together"]], [r for r in rows if r["together"]]


def write(args, rows: list[dict], load_before) -> dict:
    solo, joint = arms(rows)
    total_solo, total_joint = sum(r["wall_s"] for r in solo), sum(r["wall_s"] for r in joint)
    out = {"args": {k: v for k, v in vars(args).items() if k not in ("one_arm", "arm_dir")}, "rows": rows,
           "load_before": load_before, "load_after": os.getloadavg(), "solo_s": total_solo, "together_s": total_joint,
           "speed_up": round(total_solo / total_joint, 3) if total_joint else None,
           "same_single_accuracies": all(a["single"] == b["single"] for a, b in zip(solo, joint))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.out)
    return out


if __name__ == "__main__":
    main()
