"""Does this CPU compute bfloat16 natively? fp32 vs bf16 GEMM speed at a SmolLM2-135M MLP shape.

    python bench/bench_cpu_bf16.py [--repeats 5] [--threads 1] [--out bench/results/cpu_bf16-CAPABILITY.json]

One 2048x576 @ 576x1536 matmul (a batch of 2048 tokens through the MLP's up projection), timed in
float32 and in bfloat16 in turn (alternating, median of the repeats), with the CPU's model, its
bf16-relevant flags, what lorikit's ``--dtype auto`` picks and torch's CPU capability. On a CPU
with AVX512-BF16 / AMX bf16 runs several times faster; without it torch emulates bf16 and it runs
many times slower, which is why ``auto`` picks float32 there and a pinned ``bfloat16`` warns.
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

from lorikit.models.device import _cpu_flags, cpu_has_bf16, resolve_dtype

SHAPE = (2048, 576, 1536)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    m, k, n = SHAPE
    a, b = torch.randn(m, k), torch.randn(k, n)
    pairs = {dt: (a.to(dt), b.to(dt)) for dt in (torch.float32, torch.bfloat16)}
    for x, y in pairs.values():
        x @ y  # warm-up: kernels picked, pages touched
    times: dict[str, list[float]] = {str(dt).removeprefix("torch."): [] for dt in pairs}
    for _ in range(args.repeats):
        for dt, (x, y) in pairs.items():
            t0 = time.perf_counter()
            x @ y
            times[str(dt).removeprefix("torch.")].append(time.perf_counter() - t0)
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
    path = Path(args.out or f"bench/results/cpu_bf16-{out['torch_capability'].lower()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
