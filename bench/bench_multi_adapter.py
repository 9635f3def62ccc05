"""Several adapters per pass: K adapters trained one process after another vs together in one process.

Side "separate": ``lorikit train --config TASK.yaml`` once per task, each its own process (as a
study stage runs today: process start, model load, data, the loop, the write). Side "together":
one ``lorikit train-many A.yaml B.yaml ...`` process over the same config files (outputs in
another folder). Both sides run the same configs: LoRA (``--method``), ``--rank``, ``--batch-size``,
``--steps`` optimizer steps each, no early stopping, seed 1, the base in ``--dtype`` (auto:
bfloat16 on a CPU with native bf16).

Order against drift in machine load: the separate runs bracket the joint one (the first half of
the tasks, then the joint run, then the rest), so a load that drifts linearly hits both sides
alike; ``--rounds 2`` adds a second round in the opposite arrangement (joint, all separate,
nothing between). Reported: wall seconds of every process, the sum of each side, the speed-up
(separate / together), the training loop's own seconds (``train_log.jsonl``), and how far the
joint adapters are from the separate ones (‖B_together − B_separate‖ / ‖B_separate‖ over every lora_B: float
noise in bfloat16, amplified by AdamW's first steps; not a quality measure). Prints a table, writes ``bench/results/multi_adapter.json``.
Give each process one thread on a shared machine (``OMP_NUM_THREADS=1``, the default here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = ["pair-max", "words-reverse", "parity", "py-type"]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_configs(folder: Path, args) -> list[Path]:
    files = []
    for task in args.tasks:
        path = folder / f"{task}.yaml"
        path.write_text(json.dumps({
            "out": str(folder / "OUT" / task), "model": args.model, "data": f"builtin:{task}", "dtype": args.dtype,
            "max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "method": args.method,
            "rank": args.rank, "dropout": args.dropout, "seed": 1, "builtin_rows": args.rows, "overwrite": True,
        }) + "\n")
        files.append(path)
    return files


def with_out(files: list[Path], side: str) -> list[Path]:
    """The config files with their out under ``side`` (separate and together write different folders)."""
    moved = []
    for f in files:
        cfg = json.loads(f.read_text())
        cfg["out"] = cfg["out"].replace("/OUT/", f"/{side}/")
        target = f.with_name(f"{side}-{f.name}")
        target.write_text(json.dumps(cfg) + "\n")
        moved.append(target)
    return moved


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lorikit", *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"bench_multi_adapter: lorikit {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds


def loop_seconds(out: Path) -> float:
    return sum(json.loads(line)["seconds"] for line in (out / "train_log.jsonl").read_text().splitlines())


def weight_gap(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    keys = [k for k in x if "lora_B" in k]
    norm = sum(float(x[k].float().pow(2).sum()) for k in keys) ** 0.5
    return (sum(float((x[k] - y[k]).float().pow(2).sum()) for k in keys) ** 0.5) / norm if norm else 0.0


def one_round(files: list[Path], env: dict, joint_in_middle: bool, note=lambda partial: None) -> dict:
    separate, joint = with_out(files, "separate"), with_out(files, "together")
    half = len(separate) // 2 if joint_in_middle else 0
    walls: dict[str, float] = {}
    order = [("separate", f) for f in separate[:half]] + [("together", None)] + [("separate", f) for f in separate[half:]]
    loads = {"start": load_average()}
    for side, f in order:
        if side == "together":
            walls["together"] = timed(["train-many", *map(str, joint)], env)
            note({"wall_s": {k: round(v, 1) for k, v in walls.items()}, "load_average_now": load_average()})
        else:
            walls[f.stem.removeprefix("separate-")] = timed(["train", "--config", str(f)], env)
        note({"wall_s": {k: round(v, 1) for k, v in walls.items()}, "load_average_now": load_average()})
    loads["end"] = load_average()
    outs = {side: [Path(json.loads(f.read_text())["out"]) for f in fs] for side, fs in
            (("separate", separate), ("together", joint))}
    sep_wall = sum(v for k, v in walls.items() if k != "together")
    return {
        "order": [side if f is None else f.stem.removeprefix("separate-") for side, f in order],
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
        "separate_wall_s": round(sep_wall, 1), "together_wall_s": round(walls["together"], 1),
        "speed_up": round(sep_wall / walls["together"], 3),
        "separate_loop_s": round(sum(loop_seconds(o) for o in outs["separate"]), 1),
        "together_loop_s": round(max(loop_seconds(o) for o in outs["together"]), 1),
        "rel_gap_lora_B": {o.name: weight_gap(o, t) for o, t in zip(outs["separate"], outs["together"])},
        "load_average": loads,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--method", default="lora")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--rows", type=int, default=400, help="built-in rows generated per task")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--rounds", type=int, default=1, help="2: a second round with the joint run first")
    p.add_argument("--json", default=str(HERE / "results" / "multi_adapter.json"))
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rounds: list[dict] = []
    head = {"settings": vars(args), "threads": env["OMP_NUM_THREADS"],
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}

    def note(partial: dict) -> None:  # a stopped run still leaves the processes it finished
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**head, "complete": False, "rounds": rounds,
                                               "round_in_progress": partial}, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        files = write_configs(Path(tmp), args)
        for r in range(args.rounds):
            rounds.append(one_round(files, env, joint_in_middle=r % 2 == 0, note=note))
    print(f"\n{len(args.tasks)} adapters ({args.method} r{args.rank}, batch {args.batch_size}, {args.steps} steps, "
          f"{args.model}, dtype {args.dtype}), OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    print("| round | order | separate wall s (per task) | together wall s | speed-up | loop s separate / together | load avg start → end |")
    print("|---|---|---|---:|---:|---|---|")
    for i, r in enumerate(rounds):
        per = ", ".join(f"{k} {v}" for k, v in r["wall_s"].items() if k != "together")
        print(f"| {i + 1} | {' → '.join(r['order'])} | {r['separate_wall_s']} ({per}) | {r['together_wall_s']} | "
              f"{r['speed_up']:.2f}× | {r['separate_loop_s']} / {r['together_loop_s']} | "
              f"{r['load_average']['start'][0]} → {r['load_average']['end'][0]} |")
    gaps = {k: max(r["rel_gap_lora_B"][k] for r in rounds) for k in rounds[0]["rel_gap_lora_B"]}
    print("‖B_together − B_separate‖ / ‖B_separate‖ (all lora_B): " + ", ".join(f"{k} {v:.2g}" for k, v in gaps.items()))
    Path(args.json).write_text(json.dumps({
        **head, "complete": True, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "rounds": rounds,
    }, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
