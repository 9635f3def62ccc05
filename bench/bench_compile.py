"""Does ``torch.compile`` pay for a study's training step on this CPU? (issue 27, "any other lever")

    python bench/bench_compile.py [--rows 8] [--length 64] [--steps 6] [--rounds 2]

SmolLM2-135M with its base in bfloat16 and a PEFT LoRA r 8 adapter (float32) on every linear layer,
dropout 0.05, AdamW on the adapter: one forward + backward + optimizer step of ``--rows`` rows of
``--length`` tokens (a study's batch; the loss is the causal-LM loss on every position here, where
lorikit scores answer positions only). Eager and ``torch.compile`` (inductor, default mode) are
timed at one thread in the same process, alternating rounds; the compiled model's first call (its
compilation) is timed apart. One fixed shape: a study's batches vary in length, and each new length
would compile again (or need padding to length buckets). Prints a table; writes
``bench/results/compile.json``.
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


def build(seed: int):
    from peft import LoraConfig, get_peft_model

    from lorikit.models import load_model

    torch.manual_seed(seed)
    bundle = load_model("smollm2-135m", dtype=torch.bfloat16)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(bundle.model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-3)


def step(model, optimizer, ids):
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(out.loss)


def timed(model, optimizer, ids, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(model, optimizer, ids)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "compile.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ids = torch.randint(100, 40000, (args.rows, args.length), generator=torch.Generator().manual_seed(0))
    eager_model, eager_opt = build(1)
    compiled_model, compiled_opt = build(1)
    forward = torch.compile(compiled_model)
    t0 = time.perf_counter()
    step(forward, compiled_opt, ids)  # compiles forward and backward
    compile_s = time.perf_counter() - t0
    step(eager_model, eager_opt, ids)  # the eager model's first step, so both have warmed up once
    rows = []
    for r in range(args.rounds):
        order = [("eager", eager_model, eager_opt), ("compiled", forward, compiled_opt)]
        for name, model, opt in (order if r % 2 == 0 else order[::-1]):
            rows.append({"round": r + 1, "arm": name, "seconds": timed(model, opt, ids, args.steps)})
    med = {arm: statistics.median([s for row in rows if row["arm"] == arm for s in row["seconds"]])
           for arm in ("eager", "compiled")}
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"| arm | median s/step ({args.rows} × {args.length} tokens, one thread) | per round |\n|---|---:|---|")
    for arm in ("eager", "compiled"):
        per = ", ".join(f"{statistics.median(row['seconds']):.2f}" for row in rows if row["arm"] == arm)
        print(f"| {arm} | {med[arm]:.2f} | {per} |")
    print(f"compilation (first compiled step): {compile_s:.0f} s; {load}")
    print(f"speed-up {med['eager'] / med['compiled']:.2f}× per step at one fixed shape")
    Path(args.out).write_text(json.dumps({"args": vars(args), "compile_seconds": compile_s, "median": med,
                                          "rounds": rows, "uptime": load, "torch": torch.__version__,
                                          "cpu_count": os.cpu_count()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
