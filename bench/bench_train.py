"""Issue 2 benchmark: LoRI-D vs LoRA step time and memory; supervised-position vs full logits.

Side by side in one run on smollm2-135m with the same batches:
1. Step time of lora vs lori-d, interleaved step by step (A/B/A/B) so machine noise hits both.
   Memory: bytes of gradients + AdamW moments (exact, from the tensors), and each variant's
   peak RSS measured in its own subprocess.
2. Tokens/s of the supervised-position loss vs the full-logits loss on prompt-heavy data
   (the NLU format, BoolQ rows), forward + backward, interleaved.
Prints a table and writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "datasets"


def batches_for(tok, spec, fmt, n_batches, batch_size, max_length):
    from lorikit.data import collate, load_examples, tokenize_example

    exs = load_examples(spec, fmt, limit=n_batches * batch_size)
    toks = [tokenize_example(tok, e.prompt, e.response, max_length, max_length // 2) for e in exs]
    return [collate(toks[i:i + batch_size], tok.pad_token_id) for i in range(0, len(toks), batch_size)]


def build(method, rank):
    from lorikit.adapters.build import AdapterConfig, attach_adapter
    from lorikit.models import load_model

    bundle = load_model("smollm2-135m")
    peft = attach_adapter(bundle.model, AdapterConfig(method=method, rank=rank, seed=0), bundle.base_model_id)
    peft.train()
    params = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    return bundle, peft, params, opt


def train_step(peft, opt, params, batch, supervised=True):
    from lorikit.train.loss import sft_loss_sum

    t0 = time.perf_counter()
    loss, n = sft_loss_sum(peft.get_base_model(), batch, supervised)
    (loss / n).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=False)  # keep grads allocated so their bytes are counted
    return time.perf_counter() - t0, n


def state_bytes(params, opt):
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    moments = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                  if torch.is_tensor(t) and t.dim() > 0)
    return grads, moments


def child_peak_rss(method, rank, steps, batch_size, max_length):
    """Run ``steps`` steps of one method in a fresh process; its peak RSS in MiB."""
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(HERE)!r}); import bench_train as b; "
            f"b.child({method!r}, {rank}, {steps}, {batch_size}, {max_length})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def child(method, rank, steps, batch_size, max_length):
    bundle, peft, params, opt = build(method, rank)
    batches = batches_for(bundle.tokenizer, "builtin:arithmetic", "auto", steps, batch_size, max_length)
    for b in batches:
        train_step(peft, opt, params, b)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--out", default=str(HERE / "results" / "train.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    results = {"device": "cpu", "threads": torch.get_num_threads(), "model": "smollm2-135m",
               "batch_size": args.batch_size, "max_length": args.max_length, "rank": args.rank}

    # 1. lora vs lori-d, interleaved, same batches (GSM8K-format built-in arithmetic)
    runs = {m: build(m, args.rank) for m in ("lora", "lori-d")}
    tok = runs["lora"][0].tokenizer
    batches = batches_for(tok, "builtin:arithmetic", "auto", args.steps + 1, args.batch_size, args.max_length)
    times = {m: [] for m in runs}
    for i, b in enumerate(batches):
        for m, (_, peft, params, opt) in runs.items():
            dt, _ = train_step(peft, opt, params, b)
            if i > 0:  # first step warms caches and allocates optimizer state
                times[m].append(dt)
    for m, (_, peft, params, opt) in runs.items():
        g, mo = state_bytes(params, opt)
        results[m] = {"step_s_median": sorted(times[m])[len(times[m]) // 2], "step_s_all": times[m],
                      "trainable": sum(p.numel() for p in params), "grad_bytes": g, "adam_bytes": mo}
    del runs
    for m in ("lora", "lori-d"):
        results[m]["peak_rss_mib"] = child_peak_rss(m, args.rank, 3, args.batch_size, args.max_length)

    # 2. supervised-position vs full logits on prompt-heavy NLU data (BoolQ), interleaved
    bundle, peft, params, opt = build("lori-d", args.rank)
    nlu = batches_for(bundle.tokenizer, str(DATA / "nlu" / "boolq" / "train.jsonl"), "nlu",
                      args.steps + 1, args.batch_size, 256)
    tps = {"supervised": [0.0, 0], "full": [0.0, 0]}
    for i, b in enumerate(nlu):
        for mode in tps:
            dt, _ = train_step(peft, opt, params, b, supervised=(mode == "supervised"))
            if i > 0:
                tps[mode][0] += dt
                tps[mode][1] += int(b["attention_mask"].sum())
    prompt_share = float(sum(int((b["labels"] == -100).logical_and(b["attention_mask"] == 1).sum()) for b in nlu)
                         / sum(int(b["attention_mask"].sum()) for b in nlu))
    for mode, (secs, toks) in tps.items():
        results[f"logits_{mode}"] = {"tokens_per_s": toks / secs, "seconds": secs, "tokens": toks}
    results["nlu_prompt_token_share"] = prompt_share

    lo, ld = results["lora"], results["lori-d"]
    results["ratios"] = {
        "lori_d_step_time_vs_lora": ld["step_s_median"] / lo["step_s_median"],
        "lori_d_grad_adam_bytes_vs_lora": (ld["grad_bytes"] + ld["adam_bytes"]) / (lo["grad_bytes"] + lo["adam_bytes"]),
        "lori_d_peak_rss_vs_lora": ld["peak_rss_mib"] / lo["peak_rss_mib"],
        "supervised_vs_full_tokens_per_s": results["logits_supervised"]["tokens_per_s"] / results["logits_full"]["tokens_per_s"],
    }
    rows = [("step time median (s)", lo["step_s_median"], ld["step_s_median"]),
            ("trainable params", lo["trainable"], ld["trainable"]),
            ("grad + Adam bytes (MiB)", (lo["grad_bytes"] + lo["adam_bytes"]) / 2**20, (ld["grad_bytes"] + ld["adam_bytes"]) / 2**20),
            ("peak RSS (MiB)", lo["peak_rss_mib"], ld["peak_rss_mib"])]
    print(f"\nsmollm2-135m, r={args.rank}, batch {args.batch_size} x {args.max_length} tokens, {results['threads']} threads")
    print(f"{'':28}{'lora':>14}{'lori-d':>14}{'lori-d/lora':>13}")
    for name, a, b in rows:
        print(f"{name:28}{a:>14.4g}{b:>14.4g}{b / a:>13.3f}")
    s, f = results["logits_supervised"]["tokens_per_s"], results["logits_full"]["tokens_per_s"]
    print(f"\nNLU (BoolQ, prompt tokens {prompt_share:.0%}): tokens/s supervised-position {s:.0f} vs full {f:.0f} "
          f"= {s / f:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
