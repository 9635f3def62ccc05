"""What ``--shared-prefix`` saves per training step at a study's shapes (issue 27, "any other lever").

    python bench/bench_shared_prefix.py [--tasks pair-max words-reverse parity py-type] \
        [--data safety=ROWS.jsonl:128] [--rounds 3] [--dtype bfloat16]

SmolLM2-135M (base in ``--dtype``), a PEFT LoRA r 8 adapter on every linear layer (float32, B drawn
so the loss is not the base model's), dropout 0 so both arms compute the same function: one forward
+ backward of the study's batch (8 rows with the reference template, cut at ``max_length``) through
``lorikit.train.loss.sft_loss_sum``, with and without the shared prefix, at one thread, in the same
process, alternating rounds. CPU seconds (``time.process_time``) so the figures hold on a loaded
machine; the table gives the tokens each arm runs through the decoder, the median CPU seconds and
their ratio, and how far the two losses lie apart (float rounding of another GEMM shape). Writes
``bench/results/shared_prefix.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def batches(spec: str, tokenizer, rows: int, seed: int):
    """(name, batch) of ``rows`` examples of a built-in task or NAME=FILE:MAX_LENGTH."""
    from lorikit.data import collate, load_examples, tokenize
    from lorikit.data.templates import apply_template

    name, _, rest = spec.partition("=")
    source, max_length = (rest.rsplit(":", 1)[0], int(rest.rsplit(":", 1)[1])) if rest else (f"builtin:{name}", 384)
    examples = load_examples(source, "auto", n_builtin=400, seed=seed)
    examples = apply_template("reference", tokenizer, examples[:rows])
    return name, collate([tokenize(tokenizer, e, max_length, None) for e in examples], tokenizer.pad_token_id)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="*", default=["pair-max", "words-reverse", "parity", "py-type"])
    ap.add_argument("--data", nargs="*", default=[], help="NAME=FILE:MAX_LENGTH real-data rows (the study's cut)")
    ap.add_argument("--rows", type=int, default=8, help="rows per batch (the study's batch)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "shared_prefix.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from peft import LoraConfig, get_peft_model

    from lorikit.models import load_model
    from lorikit.train.loss import sft_loss_sum, shared_prefix_length

    bundle = load_model("smollm2-135m", dtype=args.dtype)
    model = get_peft_model(bundle.model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.data = p.data.float()
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)
    model.train()
    causal = model.get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch, shared: bool) -> tuple[float, float]:
        for p in params:
            p.grad = None
        t0 = time.process_time()
        loss, _ = sft_loss_sum(causal, batch, True, shared_prefix=shared)
        loss.backward()
        return time.process_time() - t0, float(loss.detach())

    rows = []
    for spec in [*args.tasks, *args.data]:
        name, batch = batches(spec, bundle.tokenizer, args.rows, seed=1)
        length = shared_prefix_length(batch)
        real = int(batch["attention_mask"].sum())
        step(batch, False)  # warm-up: first-call allocations
        times = {False: [], True: []}
        losses = {}
        for r in range(args.rounds):
            for shared in ((False, True) if r % 2 == 0 else (True, False)):
                seconds, losses[shared] = step(batch, shared)
                times[shared].append(seconds)
        full_s, shared_s = statistics.median(times[False]), statistics.median(times[True])
        row = {"task": name, "rows": batch["input_ids"].shape[0], "width": batch["input_ids"].shape[1],
               "shared_tokens": length, "tokens_full": batch["input_ids"].numel(),
               "tokens_shared": length + batch["input_ids"][:, length:].numel(), "real_tokens": real,
               "cpu_s_full": round(full_s, 3), "cpu_s_shared": round(shared_s, 3),
               "ratio": round(full_s / shared_s, 2), "loss_full": losses[False], "loss_shared": losses[True],
               "loss_rel_diff": abs(losses[True] - losses[False]) / abs(losses[False])}
        rows.append(row)
        print(f"{name}: {row['tokens_full']} -> {row['tokens_shared']} tokens, {full_s:.2f} -> {shared_s:.2f} s, "
              f"{row['ratio']:.2f}x", flush=True)
    load = os.getloadavg()
    print(f"\n| task | batch × width | shared tokens | tokens through the decoder: full → shared | CPU s full | "
          f"CPU s shared | full / shared | loss rel. diff |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['task']} | {r['rows']} × {r['width']} | {r['shared_tokens']} | {r['tokens_full']} → "
              f"{r['tokens_shared']} | {r['cpu_s_full']:.2f} | {r['cpu_s_shared']:.2f} | {r['ratio']:.2f}× | "
              f"{r['loss_rel_diff']:.1e} |")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.dtype}; one thread; median of {args.rounds}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows, "loadavg": load,
                                          "torch": torch.__version__,
                                          "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                                capture_output=True, text=True).stdout.strip()},
                                         indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
