"""The GPU path in one run: bf16 training steps at 1B and 8B shapes, a factor-space merge at 8B
shapes against the dense computation, and the commands for FSDP2 and a one-seed study.

    python bench/gpu_check.py --part train --out DIR     # or --part merge; --dry-run: CPU, tiny shapes

``train``: per shape (Llama-3.2-1B and Llama-3-8B configs, random weights built from the config,
no download) and method (LoRA, LoRI-D, LoRI-S at 90 % sparsity), ``--steps`` optimizer steps of a
``--batch`` × ``--seq`` batch with a bf16 base and float32 adapter (lorikit's own plans: PEFT LoRA,
LoRI's frozen seeded A, LoRI-S's sparse B), the first step a warm-up: tokens per second and peak
GPU memory. ``merge``: knots and core-space merges of four rank-32 adapters on one 8B layer in
factor space and densely (bench_merge.py), time, memory and their relative difference. Rows go to
``DIR/PART.json`` and a table to stdout. ``bench/gpu_check.sh`` runs both, then FSDP2 and the study.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

SHAPES = {  # (hidden, intermediate, layers, heads, kv heads, vocab)
    "llama-1b": (2048, 8192, 16, 32, 8, 128256),
    "llama-8b": (4096, 14336, 32, 32, 8, 128256),
}
TINY = {"tiny-a": (64, 128, 2, 4, 2, 256), "tiny-b": (96, 192, 2, 4, 2, 256)}
METHODS = ("lora", "lori-d", "lori-s")


def random_llama(shape, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv, vocab = shape
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, vocab_size=vocab, max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(cfg).to(dtype)


def with_adapter(model, method: str, rank: int):
    """The model wrapped for ``method`` and the tensors its optimizer updates."""
    from peft import LoraConfig

    from lorikit.adapters.build import AdapterConfig, attach_adapter
    from lorikit.adapters.methods import get_method
    from lorikit.integrations import extract_masks, get_lori_model

    if method == "lori-s":
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                      "gate_proj", "up_proj", "down_proj"])
        dense = get_lori_model(model, cfg, "lori-d", seed=0)
        with torch.no_grad():
            for name, p in dense.named_parameters():
                if "lora_B" in name:
                    p.normal_()
        masks = extract_masks(dense, 0.9)
        base = dense.unload()
        peft_model = get_lori_model(base, cfg, "lori-s", seed=0, mask=masks)
        return peft_model, [p for p in peft_model.parameters() if p.requires_grad]
    peft_model = attach_adapter(model, AdapterConfig(method=method, rank=rank, seed=0), "random")
    return peft_model, list(get_method(method).plan(peft_model).parameters())


def train_row(name: str, shape, method: str, args) -> dict:
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, params = with_adapter(random_llama(shape, device, torch.bfloat16), method, args.rank)
    model.train()
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device == "cuda" or None)
    ids = torch.randint(0, shape[5], (args.batch, args.seq), device=device)
    times = []
    for _ in range(args.steps + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step_s = sum(times[1:]) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    del model, opt
    return {"shape": name, "method": method, "device": device, "trainable": sum(p.numel() for p in params),
            "tokens_per_s": round(args.batch * args.seq / step_s, 1), "step_s": round(step_s, 4),
            "peak_gib": round(peak, 2) if peak is not None else None, "loss": float(loss.detach())}


def run_train(args) -> list[dict]:
    rows = []
    for name, shape in (TINY if args.dry_run else SHAPES).items():
        for method in METHODS:
            rows.append(train_row(name, shape, method, args))
            r = rows[-1]
            print(f"train {r['shape']:9} {r['method']:7} {r['tokens_per_s']:>10.0f} tok/s  peak "
                  f"{r['peak_gib'] if r['peak_gib'] is not None else '-':>6} GiB  ({r['trainable']:,} trainable)", flush=True)
    return rows


def run_merge(args) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_merge

    if args.dry_run:  # the same comparison on tiny shapes
        h, i, kv = 64, 128, 32
        bench_merge.SHAPES = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
                              "self_attn.o_proj": (h, h), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h),
                              "mlp.down_proj": (h, i)}
    return bench_merge.bench_factor_vs_dense(1, {"knots": ("k_proj",), "core-space": ("q_proj",)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("train", "merge"), required=True)
    p.add_argument("--dry-run", action="store_true", help="CPU and tiny shapes (checks the script, not the GPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps after one warm-up (default 5; dry run 1)")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default 4; dry run 2)")
    p.add_argument("--seq", type=int, default=None, help="tokens per sequence (default 1024; dry run 16)")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--out", required=True, help="folder for PART.json")
    args = p.parse_args()
    for key, full, dry in (("steps", 5, 1), ("batch", 4, 2), ("seq", 1024, 16)):
        if getattr(args, key) is None:
            setattr(args, key, dry if args.dry_run else full)
    rows = run_train(args) if args.part == "train" else run_merge(args)
    out = Path(args.out) / f"{args.part}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.dry_run else "cpu"
    out.write_text(json.dumps({"part": args.part, "dry_run": args.dry_run, "device": device, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
