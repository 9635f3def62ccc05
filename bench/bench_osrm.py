"""OSRM statistics pass vs a plain forward over the same batches (smollm2-135m, CPU).

Side by side, in alternating rounds over identical batches (100-sample-style data: GSM8K
prompt+response texts, max length 128, batch 8):

- ``forward``: the plain causal-LM forward, ``model(input_ids, attention_mask)`` (logits included)
- ``stats mean``: lorikit's statistics pass, count + Σh only (all that ``--osrm-mode mean`` needs)
- ``stats full fp64``: + Σ h hᵀ with float64 per-batch products (the default)
- ``stats full fp32``: + Σ h hᵀ with float32 per-batch products, float64 running sums

The statistics pass runs the transformer body only (no LM head: no logits are needed). Memory:
bytes of the accumulators of one task (what is held and written per task), with the shared-input
grouping and as it would be with one record per module.

Usage: python bench/bench_osrm.py [--samples 32] [--rounds 2] [--data FILE]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: keep the table readable
import statistics
import time
from pathlib import Path

import torch

from lorikit.models import load_model
from lorikit.osrm.stats import InputRecorder, record_task, task_texts, token_batches

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default=str(ROOT.parent.parent / "shared/datasets/gsm8k/train.jsonl"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    if not Path(args.data).is_file():
        args.data = "/work/shared/datasets/gsm8k/train.jsonl"

    bundle = load_model(args.model)
    model, tok = bundle.model, bundle.tokenizer
    texts = task_texts(args.data, "auto", args.samples, 42)
    batches = list(token_batches(tok, texts, args.max_length, args.batch_size))
    tokens = sum(int(m.sum()) for _, m in batches)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    @torch.no_grad()
    def plain():
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    recorders = {
        "stats mean": InputRecorder(model, targets, second_moment=False),
        "stats full fp64": InputRecorder(model, targets, second_moment=True, gram_dtype=torch.float64),
        "stats full fp32": InputRecorder(model, targets, second_moment=True, gram_dtype=torch.float32),
    }
    for rec in recorders.values():  # only one recorder's hooks may be live at a time
        rec.close()

    def stats_pass(name):
        def run():
            rec = recorders[name]
            rec._handles = [m.register_forward_pre_hook(rec._hook(n)) for n, m in rec.targets]
            try:
                record_task(rec, model, batches, torch.device("cpu"), desc=name)
            finally:
                rec.close()
        return run

    cases = {"forward": plain, **{name: stats_pass(name) for name in recorders}}
    plain()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    full = recorders["stats full fp64"]
    per_module = {n: full.total[full.group_of[n]].numel() for n, _ in full.targets}
    unshared = sum(8 * (d * d + d) for d in per_module.values())
    results = {
        "model": bundle.base_model_id, "samples": args.samples, "batches": len(batches), "tokens": tokens,
        "threads": torch.get_num_threads(), "rounds": args.rounds,
        "seconds": {k: statistics.median(v) for k, v in times.items()},
        "memory_bytes_per_task": {"mean only": recorders["stats mean"].nbytes(), "full (shared inputs)": full.nbytes(),
                                  "full (one per module)": unshared},
        "modules": len(full.targets), "distinct_inputs": len(full.total),
    }
    base = results["seconds"]["forward"]
    results["ratio_vs_forward"] = {k: v / base for k, v in results["seconds"].items()}
    print(f"{args.model}: {len(batches)} batches, {tokens} real tokens, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds")
    print(f"{'pass':<18}{'seconds':>9}{'× forward':>11}")
    for k, v in results["seconds"].items():
        print(f"{k:<18}{v:>9.2f}{results['ratio_vs_forward'][k]:>11.2f}")
    print(f"{'memory per task':<28}{'MiB':>8}")
    for k, v in results["memory_bytes_per_task"].items():
        print(f"{k:<28}{v / 2**20:>8.1f}")
    out = ROOT / "results" / "osrm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
