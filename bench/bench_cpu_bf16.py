"""Does this CPU compute bfloat16 natively? fp32 vs bf16 GEMM speed at a SmolLM2-135M MLP shape.

    python bench/bench_cpu_bf16.py [--repeats 5] [--threads 1] [--train-step] [--out bench/results/cpu_bf16-CAPABILITY.json]

One 2048x576 @ 576x1536 matmul (a batch of 2048 tokens through the MLP's up projection), timed in
float32, in bfloat16 and as lorikit computes a bf16 Linear where the CPU lacks native bf16 (float32
GEMM of the bf16 operands, rounded to bf16: ``models/cpu_bf16.py``), in turn (alternating, median of
the repeats), with the CPU's model, its bf16-relevant flags, what lorikit's ``--dtype auto`` picks
and torch's CPU capability. On a CPU with AVX512-BF16 / AMX bf16 runs several times faster; without
it torch emulates bf16 and it runs many times slower, which is why ``auto`` picks float32 there and
lorikit computes a bf16 base's Linears in float32. ``--train-step`` also times one LoRA training step
(forward + backward, batch 8 x 64 tokens) of SmolLM2-135M with a float32 base, a bf16 base as
lorikit runs it on this CPU, and a bf16 base on torch's own bf16 kernels (one step: emulated, it is slow).
Pause other jobs while it runs (``kill -STOP``): the ratio is the point, and it is only fair idle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from lorikit.models.cpu_bf16 import use_float32_gemms
from lorikit.models.device import _cpu_flags, cpu_has_bf16, resolve_dtype

SHAPE = (2048, 576, 1536)
STEP_BATCH = (8, 64)


def train_step_seconds(base: str, repeats: int) -> float:
    """Median seconds of a LoRA (rank 8, every projection) forward + backward on SmolLM2-135M.
    ``base``: float32, bfloat16-float32-gemm (lorikit's bf16 where the CPU emulates it), bfloat16-torch."""
    from peft import LoraConfig, get_peft_model

    from lorikit.models.loading import load_model

    model = load_model(dtype="float32" if base == "float32" else "bfloat16").model
    for layer in model.modules():  # load_model picked for this CPU; set the path being measured
        if isinstance(layer, torch.nn.Linear) and layer.weight.dtype == torch.bfloat16:
            layer.__class__ = torch.nn.Linear
    if base == "bfloat16-float32-gemm":
        use_float32_gemms(model)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=8, target_modules=targets))
    ids = torch.randint(0, 1000, STEP_BATCH, generator=torch.Generator().manual_seed(0))
    seconds = []
    for _ in range(repeats + 1):  # the first is warm-up
        t0 = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-step", action="store_true", help="also time a SmolLM2-135M LoRA training step per base dtype")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    m, k, n = SHAPE
    a, b = torch.randn(m, k), torch.randn(k, n)
    ha, hb = a.bfloat16(), b.bfloat16()
    products = {"float32": lambda: a @ b, "bfloat16": lambda: ha @ hb,
                "bfloat16-float32-gemm": lambda: (ha.float() @ hb.float()).bfloat16()}
    for product in products.values():
        product()  # warm-up: kernels picked, pages touched
    times: dict[str, list[float]] = {name: [] for name in products}
    for _ in range(args.repeats):
        for name, product in products.items():
            t0 = time.perf_counter()
            product()
            times[name].append(time.perf_counter() - t0)
    flops = 2 * m * k * n
    rows = {name: {"median_s": statistics.median(v), "gflops": flops / statistics.median(v) / 1e9} for name, v in times.items()}
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    flags = sorted(f for f in _cpu_flags() if "bf16" in f or f.startswith(("avx512f", "amx", "avx2")))
    out = {"cpu": model, "machine": platform.machine(), "flags": flags, "torch_capability": torch.backends.cpu.get_cpu_capability(),
           "native_bf16": cpu_has_bf16(), "auto_picks": resolve_dtype("auto", "cpu"), "threads": args.threads,
           "shape": SHAPE, "repeats": args.repeats, "load_average": os.getloadavg(), "torch": torch.__version__, "rows": rows,
           "bf16_over_fp32_time": rows["bfloat16"]["median_s"] / rows["float32"]["median_s"]}
    print(f"{model} ({out['torch_capability']}; bf16 flags: {', '.join(f for f in flags if 'bf16' in f) or 'none'}); "
          f"load {out['load_average'][0]:.2f}")
    print("| dtype | median s | GFLOP/s |\n|---|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['median_s']:.4f} | {r['gflops']:.1f} |")
    print(f"bfloat16 takes {out['bf16_over_fp32_time']:.2f}x the time of float32; --dtype auto picks {out['auto_picks']}")
    if args.train_step:
        steps = {base: train_step_seconds(base, 1 if base == "bfloat16-torch" else args.repeats)
                 for base in ("float32", "bfloat16-float32-gemm", "bfloat16-torch")}
        out["train_step_seconds"] = steps
        out["train_step_batch"] = STEP_BATCH
        print("| base (SmolLM2-135M LoRA step, batch 8 x 64) | seconds | x float32 |\n|---|---:|---:|")
        for base, sec in steps.items():
            print(f"| {base} | {sec:.2f} | {sec / steps['float32']:.2f} |")
    path = Path(args.out or f"bench/results/cpu_bf16-{out['torch_capability'].lower()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
