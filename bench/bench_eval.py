"""Evaluation throughput: log-likelihood vs generation on BoolQ, and generation before vs after.

    python bench/bench_eval.py [--boolq FILE] [--gsm8k FILE] [--model smollm2-135m] [--items 48]
                               [--prompts 24] [--new-tokens 128] [--batch-size 16] [--only loglik|generate]

1. **loglik vs generation** (BoolQ rows in the commonsense_170k format, e.g. a copy of
   ``nlu/boolq/train.jsonl``; the base model, no adapter): ``--scoring loglik`` (one forward per
   item, head at option positions only) against ``--scoring generate`` (greedy, nlu's 32 new
   tokens, answer extracted), per example; also their accuracies and agreement on the items whose
   generated answer is well-formed.
2. **generation before vs after** (``--prompts`` GSM8K questions in the GSM8K template, a random
   rank-8 LoRA on the 7 projections, greedy, ``--new-tokens`` at most): *before* = the previous
   implementation (``model.generate`` over batches sorted by character length, adapter unmerged,
   finished rows decoded as padding until the batch ends) kept below verbatim; *after* =
   ``lorikit.eval.generate`` on the unmerged and on the merged adapter (eval's default).
   tokens/s counts the tokens each sequence produced up to its EOS.

Everything runs in one process, side by side, interleaved; writes bench/results/eval.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lorikit.data.builtin import builtin_rows  # noqa: E402
from lorikit.data.loading import read_rows  # noqa: E402
from lorikit.data.templates import gsm8k_prompt  # noqa: E402
from lorikit.eval.choice import choice_items, normalise  # noqa: E402
from lorikit.eval.generate import GenerationConfig, eos_ids, generate  # noqa: E402
from lorikit.eval.loglik import choose, option_logliks  # noqa: E402
from lorikit.eval.scorers import nlu  # noqa: E402
from lorikit.eval.tasks import load_items  # noqa: E402
from lorikit.models import load_model  # noqa: E402
from lorikit.utils.atomic import atomic_write_json  # noqa: E402

# your copies of the data: $LORIKIT_DATASETS/nlu/boolq/train.jsonl and $LORIKIT_DATASETS/gsm8k/train.jsonl
DATASETS = Path(os.environ.get("LORIKIT_DATASETS", "datasets"))


@torch.no_grad()
def generate_before(model, tokenizer, prompts, max_new_tokens, batch_size):
    """The previous lorikit.eval.generate (greedy path): HF generate, batches by character length."""
    tokenizer.padding_side = "left"
    eos = eos_ids(model, tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results, new_tokens = {}, 0
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
        seqs = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=eos, use_cache=True, temperature=None, top_p=None, top_k=None)
        new = seqs[:, enc["input_ids"].shape[1]:]
        for row in new.tolist():
            new_tokens += next((p + 1 for p, t in enumerate(row) if t in eos), len(row))
        for j, i in enumerate(idx):
            results[i] = tokenizer.decode(new[j], skip_special_tokens=True)
    return [results[i] for i in range(len(prompts))], new_tokens


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_loglik(bundle, path: str, n: int, batch_size: int) -> dict:
    rows = read_rows(path)[:n]
    items = load_items("nlu", rows, path)
    model, tok = bundle.model, bundle.tokenizer
    prompts = [it.prompt for it in items]
    option_logliks(model, tok, choice_items(items[:2], "nlu"), batch_size, progress=False)  # warm-up
    stats: dict = {}
    t_ll, ll = timed(lambda: option_logliks(model, tok, choice_items(items, "nlu"), batch_size, False, stats))
    t_gen, gen = timed(lambda: generate(model, tok, prompts, GenerationConfig(max_new_tokens=32, batch_size=batch_size),
                                        progress=False))
    ll_pred = [it.options[choose(s)] for it, s in zip(items, ll)]
    gen_pred = [nlu.extract(g[0], it.gold) for it, g in zip(items, gen)]
    well = [p is not None for p in gen_pred]
    agree = sum(w and normalise(p) == normalise(q) for w, p, q in zip(well, gen_pred, ll_pred))
    res = {"items": len(items), "data": path, "loglik_seconds": t_ll, "generate_seconds": t_gen,
           "loglik_per_item": t_ll / len(items), "generate_per_item": t_gen / len(items),
           "speedup": t_gen / t_ll, "loglik_sequences": stats["sequences"],
           "loglik_accuracy": sum(normalise(p) == normalise(it.gold) for p, it in zip(ll_pred, items)) / len(items),
           "generate_accuracy": sum(p == normalise(it.gold) for p, it in zip(gen_pred, items)) / len(items),
           "well_formed": sum(well), "agreement": agree / sum(well) if sum(well) else None}
    print(f"\nloglik vs generation, {len(items)} BoolQ items ({path}), batch {batch_size}")
    print(f"{'scoring':<10} {'seconds':>8} {'s/item':>8} {'accuracy':>9}")
    print(f"{'generate':<10} {t_gen:8.2f} {res['generate_per_item']:8.3f} {res['generate_accuracy']:9.3f}")
    print(f"{'loglik':<10} {t_ll:8.2f} {res['loglik_per_item']:8.3f} {res['loglik_accuracy']:9.3f}")
    print(f"speed-up per example: {res['speedup']:.1f}x; well-formed generated answers {sum(well)}/{len(items)}, "
          f"agreement on them {res['agreement']}")
    return res


def tiny_adapter(model, rank: int = 8, seed: int = 0):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                  "up_proj", "down_proj"])
    peft_model = get_peft_model(copy.deepcopy(model), cfg)
    gen = torch.Generator().manual_seed(seed)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=gen) * 1e-3
    return peft_model.eval()


def bench_generation(bundle, prompts: list[str], new_tokens: int, batch_size: int) -> dict:
    tok = bundle.tokenizer
    unmerged = tiny_adapter(bundle.model)
    merged = copy.deepcopy(unmerged).merge_and_unload().eval()
    cfg = GenerationConfig(max_new_tokens=new_tokens, batch_size=batch_size)
    generate(merged, tok, prompts[:2], GenerationConfig(max_new_tokens=4), progress=False)  # warm-up

    def after(model):
        stats: dict = {}
        return generate(model, tok, prompts, cfg, progress=False, stats=stats), stats["new_tokens"]

    runs = {}
    runs["before"] = timed(lambda: generate_before(unmerged, tok, prompts, new_tokens, batch_size))
    runs["after, unmerged"] = timed(lambda: after(unmerged))
    runs["after, merged"] = timed(lambda: after(merged))
    ref = runs["before"][1][0]
    print(f"\ngeneration, {len(prompts)} GSM8K prompts, <= {new_tokens} new tokens, batch {batch_size}, rank-8 LoRA")
    print(f"{'implementation':<18} {'seconds':>8} {'tokens':>7} {'tokens/s':>9} {'same as before':>15}")
    res = {}
    for name, (t, (texts, n)) in runs.items():
        texts = [x if isinstance(x, str) else x[0] for x in texts]
        same = sum(a == b for a, b in zip(texts, ref))
        res[name] = {"seconds": t, "tokens": n, "tokens_per_s": n / t, "identical_completions": same}
        print(f"{name:<18} {t:8.2f} {n:7d} {n / t:9.2f} {same:>12}/{len(prompts)}")
    res["speedup"] = res["after, merged"]["tokens_per_s"] / res["before"]["tokens_per_s"]
    print(f"speed-up (tokens/s after, merged / before): {res['speedup']:.2f}x")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--boolq", default=str(DATASETS / "nlu" / "boolq" / "train.jsonl"),
                    help="BoolQ rows in the commonsense_170k format (default under $LORIKIT_DATASETS)")
    ap.add_argument("--gsm8k", default=str(DATASETS / "gsm8k" / "train.jsonl"),
                    help="GSM8K rows (question, answer); built-in arithmetic questions when the file is absent")
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--only", choices=("loglik", "generate"))
    args = ap.parse_args()
    torch.manual_seed(0)
    bundle = load_model(args.model)
    out = Path(__file__).resolve().parent / "results" / "eval.json"
    result = json.loads(out.read_text()) if out.is_file() else {}  # each part replaces its own entry
    env = {"model": args.model, "threads": torch.get_num_threads(), "machine": platform.machine(),
           "torch": torch.__version__, "cpus": os.cpu_count()}
    if args.only != "generate":
        load = os.getloadavg()
        part = bench_loglik(bundle, args.boolq, args.items, args.batch_size)
        result["loglik_vs_generation"] = {**part, **env, "load_average": [load[0], os.getloadavg()[0]]}
        atomic_write_json(out, result)
    if args.only != "loglik":
        load = os.getloadavg()
        if Path(args.gsm8k).is_file():
            questions = [r["question"] for r in read_rows(args.gsm8k)[:args.prompts]]
        else:
            questions = [r["question"] for r in builtin_rows("arithmetic", "test", args.prompts)]
        part = bench_generation(bundle, [gsm8k_prompt(q) for q in questions], args.new_tokens, args.batch_size)
        result["generation"] = {**part, **env, "prompts": len(questions), "max_new_tokens": args.new_tokens,
                                "batch_size": args.batch_size, "data": args.gsm8k,
                                "load_average": [load[0], os.getloadavg()[0]]}
        atomic_write_json(out, result)
    print(f"\nload average now {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs); figures in {out}")


if __name__ == "__main__":
    main()
