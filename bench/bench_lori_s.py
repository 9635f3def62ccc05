"""Issue 3 benchmark: LoRI-S (sparse trainable state) vs PEFT LoRA, and compact .lori size.

Side by side in one run on smollm2-135m, r = 32, with the same batches:
1. A LoRI-D adapter is trained for a few steps and its global 0.9 mask extracted (`lorikit masks`).
2. Step time of lora vs lori-s (built by the Trainer exactly as `lorikit train` builds them),
   interleaved step by step so machine noise hits both. Memory: bytes of gradients + AdamW
   moments, exact from the tensors (the fixed int64 scatter indices of lori-s are reported
   separately: they are neither gradient nor optimizer state).
3. A LoRI-S adapter is trained (`train`), packed (`pack_adapter`), and the .lori size compared
   with the PEFT adapter_model.safetensors it came from; the round trip is checked bit for bit.
Prints a table and writes bench/results/lori_s.json.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def batches_for(tok, n_batches, batch_size, max_length):
    from lorikit.data import collate, load_examples, tokenize_example

    exs = load_examples("builtin:arithmetic", "auto", limit=n_batches * batch_size)
    toks = [tokenize_example(tok, e.prompt, e.response, max_length, max_length // 2) for e in exs]
    return [collate(toks[i:i + batch_size], tok.pad_token_id) for i in range(0, len(toks), batch_size)]


def train_cfg(out, method, rank, steps, batch_size, mask=None, lr=5e-5, max_length=96):
    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig

    return TrainConfig(out=str(out), model="smollm2-135m", data="builtin:arithmetic", builtin_rows=64,
                       max_steps=steps, batch_size=batch_size, max_length=max_length, lr=lr, mask=mask,
                       adapter=AdapterConfig(method=method, rank=rank))


def build(cfg):
    from lorikit.train import Trainer

    bundle, peft, plan = Trainer(cfg).build_model()
    peft.train()
    params = plan.parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    return bundle, peft, plan, params, opt


def train_step(peft, opt, params, batch):
    from lorikit.train.loss import sft_loss_sum

    t0 = time.perf_counter()
    loss, n = sft_loss_sum(peft.get_base_model(), batch, True)
    (loss / n).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=False)  # keep grads allocated so their bytes are counted
    return time.perf_counter() - t0


def state_bytes(peft, params, opt):
    grads = sum(p.grad.numel() * p.grad.element_size() for p in peft.parameters() if p.grad is not None)
    moments = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                  if torch.is_tensor(t) and t.dim() > 0)
    indices = sum(b.numel() * b.element_size() for n, b in peft.named_buffers() if n.endswith(".indices"))
    return grads, moments, indices


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method (after one warm-up step)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--out", default=str(HERE / "results" / "lori_s.json"))
    args = ap.parse_args()
    from lorikit.adapters.masks import write_masks
    from lorikit.adapters.pack import pack_adapter, unpack_adapter
    from lorikit.adapters.state import load_adapter
    from lorikit.train import train

    torch.manual_seed(0)
    results = {"device": "cpu", "threads": torch.get_num_threads(), "model": "smollm2-135m", "rank": args.rank,
               "batch_size": args.batch_size, "max_length": args.max_length, "sparsity": args.sparsity}
    tmp = Path(tempfile.mkdtemp(prefix="bench-lori-s-"))
    atexit.register(shutil.rmtree, tmp, True)

    # 1. LoRI-D adapter and its mask
    d = train(train_cfg(tmp / "d", "lori-d", args.rank, 2, args.batch_size, lr=5e-4, max_length=args.max_length))
    print("trained lori-d", flush=True)
    [(mask, mres)] = write_masks(d, [args.sparsity])
    results["mask"] = {"kept": mres.kept, "total": mres.total, "kept_fraction": mres.kept_fraction}

    # 2. lora vs lori-s, interleaved, same batches
    runs = {"lora": build(train_cfg(tmp / "x", "lora", args.rank, 1, args.batch_size)),
            "lori-s": build(train_cfg(tmp / "y", "lori-s", args.rank, 1, args.batch_size, mask=str(mask), lr=5e-4))}
    batches = batches_for(runs["lora"][0].tokenizer, args.steps + 1, args.batch_size, args.max_length)
    times = {m: [] for m in runs}
    for i, b in enumerate(batches):
        for m, (_, peft, _, params, opt) in runs.items():
            dt = train_step(peft, opt, params, b)
            if i > 0:  # the first step warms caches and allocates optimizer state
                times[m].append(dt)
    for m, (_, peft, plan, params, opt) in runs.items():
        g, mo, idx = state_bytes(peft, params, opt)
        results[m] = {"step_s_median": sorted(times[m])[len(times[m]) // 2], "step_s_all": times[m],
                      "trainable": sum(p.numel() for p in params), "grad_bytes": g, "adam_bytes": mo,
                      "index_bytes": idx}
    del runs
    print("timed lora vs lori-s", flush=True)
    lora, lori_s = results["lora"], results["lori-s"]
    results["state_ratio"] = (lori_s["grad_bytes"] + lori_s["adam_bytes"]) / (lora["grad_bytes"] + lora["adam_bytes"])
    results["state_ratio_with_indices"] = (lori_s["grad_bytes"] + lori_s["adam_bytes"] + lori_s["index_bytes"]) / (
        lora["grad_bytes"] + lora["adam_bytes"])
    results["step_time_ratio"] = lori_s["step_s_median"] / lora["step_s_median"]

    # 3. compact storage of a trained LoRI-S adapter (and of the LoRI-D one, for reference)
    s = train(train_cfg(tmp / "s", "lori-s", args.rank, 2, args.batch_size, mask=str(mask), lr=5e-4,
                        max_length=args.max_length))
    for name, folder in (("lori-s", s), ("lori-d", d)):
        rep = pack_adapter(folder, tmp / f"{name}.lori")
        back = unpack_adapter(tmp / f"{name}.lori", tmp / f"{name}-back")
        a, b = load_adapter(folder), load_adapter(back)
        identical = list(a.tensors) == list(b.tensors) and all(
            torch.equal(a.tensors[k].view(torch.int32), b.tensors[k].view(torch.int32)) for k in a.tensors)
        results[f"pack_{name}"] = {"packed_bytes": rep.packed_bytes, "peft_bytes": rep.peft_bytes,
                                   "ratio": rep.ratio, "kept": rep.kept, "b_entries": rep.b_entries,
                                   "a_from_seed": f"{rep.a_regenerated}/{rep.modules}",
                                   "round_trip_bit_identical": identical}

    print(f"smollm2-135m, r={args.rank}, batch {args.batch_size}, {args.steps} timed steps, "
          f"{torch.get_num_threads()} threads; mask kept {mres.kept:,}/{mres.total:,} ({mres.kept_fraction:.4f})")
    print(f"{'method':<8} {'trainable':>11} {'grad MiB':>9} {'Adam MiB':>9} {'idx MiB':>8} {'step s':>8}")
    for m in ("lora", "lori-s"):
        r = results[m]
        print(f"{m:<8} {r['trainable']:>11,} {r['grad_bytes'] / 2**20:>9.2f} {r['adam_bytes'] / 2**20:>9.2f} "
              f"{r['index_bytes'] / 2**20:>8.2f} {r['step_s_median']:>8.3f}")
    print(f"grad+Adam bytes lori-s / lora: {results['state_ratio']:.2%} (target <= 6%); "
          f"with scatter indices {results['state_ratio_with_indices']:.2%}")
    print(f"step time lori-s / lora: {results['step_time_ratio']:.2f}x")
    for name in ("lori-s", "lori-d"):
        p = results[f"pack_{name}"]
        print(f"pack {name}: {p['packed_bytes']:,} B vs PEFT {p['peft_bytes']:,} B = {p['ratio']:.2%}"
              f" (A from seed {p['a_from_seed']}, round trip identical: {p['round_trip_bit_identical']})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
