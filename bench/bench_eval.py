"""Generation throughput: batched (left-padded, KV cache) vs one prompt at a time.

    python bench/bench_eval.py [--model smollm2-135m] [--prompts 16] [--new-tokens 32] [--batch-size 16]

Both runs decode the same prompts greedily with lorikit.eval.generate in the same process; tokens/s
counts the tokens each sequence actually produced (up to its EOS). Writes bench/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lorikit.data.builtin import builtin_rows  # noqa: E402
from lorikit.data.templates import gsm8k_prompt  # noqa: E402
from lorikit.eval.generate import GenerationConfig, generate  # noqa: E402
from lorikit.models import load_model  # noqa: E402
from lorikit.utils.atomic import atomic_write_json  # noqa: E402


def timed(model, tok, prompts, cfg):
    stats = {}
    t0 = time.perf_counter()
    out = generate(model, tok, prompts, cfg, progress=False, stats=stats)
    return time.perf_counter() - t0, stats["new_tokens"], out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    bundle = load_model(args.model)
    prompts = [gsm8k_prompt(r["question"]) for r in builtin_rows("arithmetic", "test", args.prompts)]
    batched_cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    single_cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=1)
    timed(bundle.model, bundle.tokenizer, prompts[:2], batched_cfg)  # warm-up
    t_single, n_single, out_single = timed(bundle.model, bundle.tokenizer, prompts, single_cfg)
    t_batch, n_batch, out_batch = timed(bundle.model, bundle.tokenizer, prompts, batched_cfg)
    same = sum(a == b for a, b in zip(out_single, out_batch))
    rows = [("one at a time", t_single, n_single), (f"batched ({args.batch_size})", t_batch, n_batch)]
    print(f"{'mode':<16} {'seconds':>8} {'tokens':>7} {'tokens/s':>9}")
    for name, t, n in rows:
        print(f"{name:<16} {t:8.2f} {n:7d} {n / t:9.1f}")
    speedup = (n_batch / t_batch) / (n_single / t_single)
    print(f"speed-up (tokens/s batched / single): {speedup:.2f}x; identical completions: {same}/{len(prompts)}")
    result = {"model": args.model, "prompts": args.prompts, "max_new_tokens": args.new_tokens,
              "batch_size": args.batch_size, "single": {"seconds": t_single, "tokens": n_single,
                                                         "tokens_per_s": n_single / t_single},
              "batched": {"seconds": t_batch, "tokens": n_batch, "tokens_per_s": n_batch / t_batch},
              "speedup": speedup, "identical_completions": same, "threads": torch.get_num_threads(),
              "machine": platform.machine(), "torch": torch.__version__, "cpus": os.cpu_count()}
    atomic_write_json(Path(__file__).resolve().parent / "results" / "eval.json", result)


if __name__ == "__main__":
    main()
