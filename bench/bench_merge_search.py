"""Cost of one merge-search evaluation (merge the adapters, dev NLL) on SmolLM2-135M, by route.

Three random LoRA adapters (r = 8, α = 16, all 7 projections of every layer) and one dev set of
builtin arithmetic examples. Per route, the median wall time of ``--repeats`` evaluations at
different weights (after one warm-up), and the NLL it computes at one common point:

- ``forward only``: the base model's dev NLL, no merge (the floor);
- ``cat, scaled adapters``: the search's route for cat / task arithmetic (N live PEFT adapters,
  scalings set per evaluation);
- ``cat, merged weights`` / ``ties, merged weights``: the general route (``Merger`` ΔW per module,
  W₀ + ΔW written into the model's weights);
- ``cat, files``: what a loop over ``lorikit merge`` does: merge to a folder, load it with PEFT
  into a fresh copy of the base model, evaluate.

    python bench/bench_merge_search.py [--examples 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lorikit.adapters.build import load_peft
from lorikit.adapters.state import AdapterState, LoraModule, load_adapter
from lorikit.merge import MergeConfig, merge
from lorikit.models import load_model
from lorikit.search.apply import LINEAR_IN_WEIGHTS, MergedWeights, ScaledAdapters
from lorikit.search.objective import mean_nll, nll_dev_set

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK, ALPHA, N = 8, 16.0, 3


def random_adapters(model, base_id: str, folder: Path) -> list[str]:
    shapes = {name: tuple(m.weight.shape) for name, m in model.named_modules()
              if name.rsplit(".", 1)[-1] in TARGETS and hasattr(m, "weight")}
    paths = []
    for i in range(N):
        gen = torch.Generator().manual_seed(i)
        mods = [LoraModule(name, torch.randn(RANK, inp, generator=gen) / math.sqrt(inp),
                           torch.randn(out, RANK, generator=gen) * 0.02, ALPHA / RANK)
                for name, (out, inp) in shapes.items()]
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_id, "r": RANK,
                  "lora_alpha": ALPHA, "target_modules": list(TARGETS), "lora_dropout": 0.0, "bias": "none",
                  "fan_in_fan_out": False}
        AdapterState.from_modules(mods, config).save(folder / f"a{i}")
        paths.append(str(folder / f"a{i}"))
    return paths


def timed(evaluate, points) -> tuple[float, list[float]]:
    evaluate(points[0])  # warm-up
    seconds = []
    for w in points:
        t0 = time.perf_counter()
        evaluate(w)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/merge_search.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    load = os.getloadavg()
    bundle = load_model("smollm2-135m")
    base = copy.deepcopy(bundle.model)
    tmp = Path(tempfile.mkdtemp(prefix="bench-merge-search-"))
    adapters = random_adapters(bundle.model, bundle.base_model_id, tmp)
    states = [load_adapter(a) for a in adapters]
    dev = nll_dev_set("arith", "builtin:arithmetic:dev", bundle.tokenizer, limit=args.examples, batch_size=8)
    points = [[0.5 + 0.1 * k, 0.4 - 0.05 * k, 0.3 + 0.05 * k] for k in range(args.repeats)]
    common = [0.5, 0.4, 0.3]
    scaled = ScaledAdapters(copy.deepcopy(base), adapters, LINEAR_IN_WEIGHTS["cat"])
    merged = MergedWeights(copy.deepcopy(base), states, "cat", lambda k: MergeConfig().params(), adapters)
    ties = MergedWeights(copy.deepcopy(base), states, "ties", lambda k: MergeConfig(method="ties").params(), adapters)

    def via_files(w):
        out = tmp / f"m-{time.perf_counter_ns()}"
        merge(MergeConfig(adapters=adapters, method="cat", weights=w, out=str(out)))
        return mean_nll(load_peft(copy.deepcopy(base), out), dev)

    routes = {
        "forward only": lambda w: mean_nll(base, dev),
        "cat, scaled adapters": lambda w: mean_nll(scaled.apply(w, {}), dev),
        "cat, merged weights": lambda w: mean_nll(merged.apply(w, {}), dev),
        "ties, merged weights": lambda w: mean_nll(ties.apply(w, {}), dev),
        "cat, files": via_files,
    }
    print(f"merge-search evaluation cost, SmolLM2-135M, {N} adapters r={RANK}, {args.examples} dev examples; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (shared machine)")
    print(f"| route | median s / evaluation (n={args.repeats}) | dev NLL at w = {common} |\n|---|---|---|", flush=True)
    rows = []
    for name, evaluate in routes.items():  # each row printed and saved as soon as it is measured
        median, seconds = timed(evaluate, points)
        rows.append({"route": name, "median_s": median, "seconds": seconds, "nll_at_common_point": evaluate(common)})
        print(f"| {name} | {median:.2f} | {rows[-1]['nll_at_common_point']:.6f} |", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"load_average_at_start": load, "load_average_now": os.getloadavg(),
                                              "examples": args.examples, "repeats": args.repeats, "adapters": N,
                                              "rank": RANK, "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
