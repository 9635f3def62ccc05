"""What bfloat16 costs in quality: the same adapters trained and evaluated in float32 and in bf16.

    python bench/bench_bf16_quality.py [--tasks pair-greater pair-max pair-min] [--method lora] \
        [--max-steps 300] [--min-steps 0] [--[no-]shared-prefix] [--limit 200] [--workdir runs/bf16-quality] \
        [--out bench/results/bf16_quality.json]

Per task, two adapters with the same seed, data and order, under the study's budget rule (dev loss
every ``--eval-every`` steps, stop on a plateau — not before ``--min-steps`` — or at the cap, best step
kept; the shared prompt prefix as a study's default): one trained with
``--dtype float32``, one with ``--dtype bfloat16`` (frozen base in bf16, adapter and optimizer in
float32). Each is scored on the same first ``--limit`` test items in its own dtype (the paired
accuracy difference bf16 − fp32 with a bootstrap interval and McNemar's exact test), and the
float32-trained adapter and the base model are also scored in bf16: the share of items where bf16
and float32 evaluation pick the same option (log-likelihood choice agreement). A finished
adapter or result in the workdir is reused and a killed training continues from its last resume
state (every 20 steps), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import fields
from pathlib import Path

from lorikit.adapters.build import AdapterConfig
from lorikit.analysis.stats import mcnemar_exact, paired_bootstrap, wilson
from lorikit.data import BUILTIN_TASKS
from lorikit.eval.config import EvalConfig
from lorikit.eval.runner import evaluate
from lorikit.study.config import StudyConfig
from lorikit.train import TrainConfig, train
from lorikit.train.checkpoint import checkpoint_root, checkpoints

STUDY = {f.name: f.default for f in fields(StudyConfig)}
DTYPES = ("float32", "bfloat16")


def train_one(args, task: str, dtype: str, out: Path) -> dict:
    if not (out / "lorikit.json").is_file():
        # resume states every 20 steps, so that a killed run continues where it stopped (as study stages do)
        resume = bool(checkpoints(checkpoint_root(out)))
        train(TrainConfig(out=str(out), overwrite=True, model=args.model, data=f"builtin:{task}", dtype=dtype,
                          save_every=20, resume_state_only=True, keep_checkpoints=1, resume=resume,
                          device="cpu", lr=args.lr, batch_size=args.batch_size, max_steps=args.max_steps,
                          eval_every=args.eval_every, patience=args.patience, min_delta=args.min_delta,
                          min_steps=args.min_steps, shared_prefix=args.shared_prefix, dev_fraction=args.dev_fraction,
                          dev_limit=args.dev_limit, builtin_rows=args.rows, max_length=args.max_length,
                          adapter=AdapterConfig(method=args.method, rank=args.rank, dropout=args.dropout, seed=args.seed)))
    meta = json.loads((out / "lorikit.json").read_text())
    stop = meta.get("early_stopping") or {}
    return {"seconds": meta["train"]["seconds"], "steps": meta["train"]["steps"], "best_step": stop.get("chosen_step"),
            "stopped": stop.get("stopped"), "min_delta": stop.get("min_delta")}


def eval_one(args, task: str, adapter: Path | None, dtype: str, out: Path) -> dict:
    if not out.is_file():
        evaluate(EvalConfig(model=args.model, adapter=str(adapter) if adapter else None, task="builtin",
                            data=f"builtin:{task}:test", builtin_rows=max(args.limit, 200), limit=args.limit,
                            scoring="loglik", shared_prefix=args.shared_prefix, dtype=dtype, device="cpu",
                            out=str(out), overwrite=True), progress=False)
    return json.loads(out.read_text())


def picks(result: dict) -> list[str]:
    return [r["extracted"] for r in result["records"]]


def correct(result: dict) -> list[float]:
    return [float(r["correct"]) for r in result["records"]]


def agreement(a: dict, b: dict) -> dict:
    same = sum(x == y for x, y in zip(picks(a), picks(b)))
    ci = wilson(same, len(a["records"]))
    return {"agree": same, "n": len(a["records"]), "rate": round(same / len(a["records"]), 4),
            "wilson": [round(ci.low, 4), round(ci.high, 4)]}


def measure(args, task: str, work: Path) -> dict:
    row: dict = {"task": task, "train": {}, "accuracy": {}}
    for dtype in DTYPES:
        row["train"][dtype] = train_one(args, task, dtype, work / f"{task}-{dtype}")
    own = {d: eval_one(args, task, work / f"{task}-{d}", d, work / f"eval-{task}-{d}-as-{d}.json") for d in DTYPES}
    cross = eval_one(args, task, work / f"{task}-float32", "bfloat16", work / f"eval-{task}-float32-as-bfloat16.json")
    base = {d: eval_one(args, task, None, d, work / f"eval-{task}-base-as-{d}.json") for d in DTYPES}
    for dtype, res in own.items():
        ci = wilson(int(res["correct"]), int(res["n"]))
        row["accuracy"][dtype] = {"accuracy": round(res["accuracy"], 4), "n": res["n"],
                                  "wilson": [round(ci.low, 4), round(ci.high, 4)]}
    diff = paired_bootstrap(correct(own["bfloat16"]), correct(own["float32"]), n_boot=args.bootstrap)
    test = mcnemar_exact(correct(own["bfloat16"]), correct(own["float32"]))
    row["bf16_minus_fp32"] = {"diff": round(diff.estimate, 4), "ci": [round(diff.low, 4), round(diff.high, 4)],
                              "mcnemar_p": round(test.p_value, 4), "only_bf16": test.only_a, "only_fp32": test.only_b}
    row["eval_agreement"] = {"fp32_adapter": agreement(own["float32"], cross), "base": agreement(base["float32"], base["bfloat16"])}
    row["eval_seconds"] = {d: own[d]["settings"].get("loglik_seconds") for d in DTYPES}
    # per item, so every figure above can be recomputed from the committed file
    evals = {f"{d}-adapter-as-{d}": own[d] for d in DTYPES} | {"float32-adapter-as-bfloat16": cross} \
        | {f"base-as-{d}": base[d] for d in DTYPES}
    row["items"] = {name: {"ids": [str(r.get("id", i)) for i, r in enumerate(res["records"])],
                           "correct": "".join(str(int(c)) for c in correct(res)), "picks": picks(res)}
                    for name, res in evals.items()}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["pair-greater", "pair-max", "pair-min"])
    p.add_argument("--model", default=STUDY["model"])
    p.add_argument("--method", default="lora")
    p.add_argument("--seed", type=int, default=1)
    for name in ("lr", "dropout", "dev_fraction", "min_delta"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=STUDY[name])
    for name in ("rank", "batch_size", "max_steps", "min_steps", "eval_every", "patience", "dev_limit", "max_length"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=STUDY[name])
    p.add_argument("--shared-prefix", action=argparse.BooleanOptionalAction, default=STUDY["shared_prefix"],
                   help="run the prompt tokens every row of a batch shares once per batch (the study's default)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the paired interval")
    p.add_argument("--rows", type=int, default=STUDY["builtin_rows"])
    p.add_argument("--limit", type=int, default=STUDY["eval_examples"])
    p.add_argument("--workdir", default="runs/bf16-quality")
    p.add_argument("--out", default="bench/results/bf16_quality.json")
    args = p.parse_args()
    bad = [t for t in args.tasks if t not in BUILTIN_TASKS or not BUILTIN_TASKS[t].choice]
    if bad:
        raise SystemExit(f"--tasks {bad[0]}: not a built-in choice task (log-likelihood scoring needs options)")
    work = Path(args.workdir) / (f"{args.model}-{args.method}-s{args.seed}-steps{args.max_steps}-n{args.limit}"
                                 f"-every{args.eval_every}-md{args.min_delta:g}-min{args.min_steps}"
                                 f"{'-sp' if args.shared_prefix else ''}")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = []
    for task in args.tasks:  # written after each task: a run cut short keeps what finished
        rows.append(measure(args, task, work))
        write(args, rows, t0)
    print(f"{'task':14} {'fp32 acc':>9} {'bf16 acc':>9} {'bf16-fp32 [95% CI]':>24} {'McNemar p':>9} "
          f"{'agree(adapter)':>14} {'agree(base)':>11} {'train s fp32/bf16':>18}")
    for r in rows:
        a, d = r["accuracy"], r["bf16_minus_fp32"]
        print(f"{r['task']:14} {a['float32']['accuracy']:9.3f} {a['bfloat16']['accuracy']:9.3f} "
              f"{d['diff']:+8.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] {d['mcnemar_p']:9.3f} "
              f"{r['eval_agreement']['fp32_adapter']['rate']:14.3f} {r['eval_agreement']['base']['rate']:11.3f} "
              f"{r['train']['float32']['seconds']:8.0f}/{r['train']['bfloat16']['seconds']:.0f}")


def write(args, rows: list[dict], t0: float) -> None:
    out = {"budget": {k: getattr(args, k) for k in ("model", "method", "seed", "lr", "rank", "batch_size", "max_steps",
                                                      "min_steps", "shared_prefix", "eval_every", "patience", "min_delta", "dev_limit", "rows", "limit")},
           "tasks": args.tasks, "finished": [r["task"] for r in rows],
           "rows": rows, "seconds": round(time.time() - t0), "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
