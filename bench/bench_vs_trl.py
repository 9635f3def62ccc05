"""Issue 19 benchmark: lorikit against TRL's SFTTrainer + PEFT LoRA, end to end.

The same GSM8K training rows (the first ``--examples`` of ``--data``), the same model (smollm2-135m
on CPU, ``--precision``), rank 32 on the 7 projections (alpha 64, no dropout), the same global batch, learning
rate, constant schedule and number of optimizer steps, loss on the completion only, on three sides:

- ``trl-lora``: TRL ``SFTTrainer`` with a PEFT ``LoraConfig``, prompt-completion rows,
  ``completion_only_loss=True`` and ``train_sampling_strategy="group_by_length"`` (TRL's
  ``padding_free`` needs FlashAttention, which a CPU does not have), its fused AdamW, gradient
  checkpointing off (recomputing activations only costs time on a model this small);
- ``lorikit-lora`` and ``lorikit-lori-d``: ``lorikit.train`` with its defaults.

``--precision bf16`` (the default: each side at its best on a CPU with native bf16) loads the
frozen base in bfloat16 on every side and keeps TRL's own default ``bf16=True`` (autocast);
lorikit's ``--dtype`` is ``bfloat16``; adapter weights and optimizer state are float32 on all sides.
``--precision fp32`` is the earlier race (float32 everywhere, TRL's ``bf16`` off).

Each side runs in its own process (so peak RSS is its own); with ``--rounds N`` the order is
reversed every other round so a drift in machine load hits every side alike, and each lorikit
side's speed ratio to TRL is also taken per round (same round, adjacent in time): its median and
range are the spread. Reported per side:
wall time of the whole process, time of the optimizer-step loop (model and data loading excluded),
supervised tokens per second of that loop, peak RSS, and the loss curve; the curves of the two
LoRA sides must agree within noise (same data, same method), which is what makes the race fair.
Prints a table, writes bench/results/vs_trl.json and a loss-curve PNG beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "datasets" / "gsm8k" / "train.jsonl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SIDES = ("trl-lora", "lorikit-lora", "lorikit-lori-d")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_lorikit(method: str, args) -> dict:
    import lorikit
    from lorikit import AdapterConfig, TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "adapter"
        cfg = TrainConfig(out=str(out), model="smollm2-135m", data=args.data, format="gsm8k", limit=args.examples,
                          max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          dtype="bfloat16" if args.precision == "bf16" else "float32",
                          adapter=AdapterConfig(method=method, rank=32, alpha=64.0, dropout=0.0, seed=0,
                                                target_modules=TARGETS))
        lorikit.train(cfg)
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {"losses": [r["loss"] for r in log], "step_seconds": [r["seconds"] for r in log],
            "supervised_tokens": sum(r["tokens"] for r in log)}


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from lorikit.data import load_examples
    from lorikit.models import load_model

    torch.manual_seed(0)
    bundle = load_model("smollm2-135m", dtype="bfloat16" if args.precision == "bf16" else "float32")
    rows = [{"prompt": e.prompt, "completion": e.response}
            for e in load_examples(args.data, "gsm8k", limit=args.examples)]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []
            self.t0 = 0.0

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.seconds.append(time.perf_counter() - self.t0)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                           learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                           max_grad_norm=1.0, logging_steps=1, completion_only_loss=True,
                           train_sampling_strategy="group_by_length", report_to="none", save_strategy="no",
                           use_cpu=True, max_length=512, seed=0, dataloader_num_workers=0, disable_tqdm=True,
                           bf16=args.precision == "bf16", activation_checkpointing=False)
        lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                          task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=bundle.model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=bundle.tokenizer, peft_config=lora, callbacks=[timer])
        # Every row is seen once in examples / batch steps, so the supervised tokens of the run are
        # the labelled (completion) tokens of the processed data set.
        processed = trainer.train_dataset
        supervised = sum(sum(1 for t in lab if t != -100) for lab in processed["labels"])
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"losses": losses, "step_seconds": timer.seconds, "supervised_tokens": int(supervised)}


def child(side: str, args) -> None:
    t0 = time.perf_counter()
    result = run_trl(args) if side == "trl-lora" else run_lorikit(side.removeprefix("lorikit-"), args)
    result["wall_s"] = time.perf_counter() - t0
    result["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(result))


def run_side(side: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--data", args.data, "--examples", str(args.examples),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--precision", args.precision]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    line = next(l for l in reversed(out.stdout.splitlines()) if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def summarise(runs: list[dict]) -> dict:
    loop = [sum(r["step_seconds"]) for r in runs]
    tokens = runs[0]["supervised_tokens"]
    return {"rounds": len(runs), "wall_s": statistics.median(r["wall_s"] for r in runs),
            "loop_s": statistics.median(loop), "supervised_tokens": tokens,
            "tokens_per_s": tokens / statistics.median(loop),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "mean_loss": statistics.mean(statistics.mean(r["losses"]) for r in runs),
            "losses": runs[0]["losses"], "runs": runs}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for side, res in results["sides"].items():
        ax.plot(range(1, len(res["losses"]) + 1), res["losses"], label=side)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("lorikit vs TRL SFTTrainer, smollm2-135m, GSM8K")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA), help="GSM8K-format JSONL training file")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32, help="optimizer steps (default: one epoch)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--rounds", type=int, default=3, help="run every side N times, the order reversed every other round")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                    help="bf16: base weights in bfloat16 on every side (+ TRL's bf16 autocast); fp32: float32 everywhere")
    ap.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    ap.add_argument("--out", default=str(HERE / "results" / "vs_trl.json"))
    ap.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args)

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {s: [] for s in args.sides}
    for r in range(args.rounds):
        for side in (args.sides if r % 2 == 0 else list(reversed(args.sides))):
            print(f"round {r + 1}: {side} ...", flush=True)
            runs[side].append(run_side(side, args))
    results = {"model": "smollm2-135m", "precision": args.precision, "device": "cpu", "rank": 32,
               "examples": args.examples, "batch_size": args.batch_size, "steps": args.steps, "lr": args.lr,
               "load_average_before": load_before, "load_average_after": os.getloadavg(),
               "sides": {s: summarise(v) for s, v in runs.items()}}
    base = results["sides"].get("trl-lora")
    print(f"\nsmollm2-135m {args.precision}, r=32 on 7 projections, {args.examples} GSM8K rows, batch {args.batch_size}, "
          f"{args.steps} steps, {args.rounds} round(s); load average before/after "
          f"{load_before[0]:.2f} / {results['load_average_after'][0]:.2f}")
    print(f"{'side':16}{'wall s':>9}{'loop s':>9}{'sup. tok/s':>12}{'vs TRL':>8}{'peak RSS MiB':>14}{'mean loss':>11}")
    for side, res in results["sides"].items():
        ratio = res["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        res["tokens_per_s_vs_trl_lora"] = ratio
        print(f"{side:16}{res['wall_s']:>9.1f}{res['loop_s']:>9.1f}{res['tokens_per_s']:>12.1f}{ratio:>8.2f}"
              f"{res['peak_rss_mib']:>14.0f}{res['mean_loss']:>11.4f}")
    if base:
        for side, res in results["sides"].items():
            per_round = [r["supervised_tokens"] / sum(r["step_seconds"]) for r in runs[side]]
            trl = [r["supervised_tokens"] / sum(r["step_seconds"]) for r in runs["trl-lora"]]
            ratios = [a / b for a, b in zip(per_round, trl)]
            res["per_round_ratio_vs_trl_lora"] = ratios
            print(f"{side:16} per-round ratio vs TRL: median {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
