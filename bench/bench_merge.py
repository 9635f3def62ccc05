"""Merging benchmark on LLaMA-3-8B shapes (synthetic adapters built in code, no model weights).

1. ``cat`` to full ΔW per module: lorikit (``Merger(..., "cat").delta``) vs PEFT
   (adapters loaded into a PeftModel, ``add_weighted_adapter(combination_type="cat")``, then
   ``get_delta_weight`` per module). Same input tensors, one run, modules interleaved so both see
   the same machine state; max |ΔW_lorikit − ΔW_PEFT| over all modules.
2. Each delta-space method (merge to ΔW, float32) on q_proj, k_proj and gate_proj of one layer
   (one module of each shape; the full model is 32 × 7 modules): time and peak
   resident memory above the baseline (``/proc/self/clear_refs`` resets the high-water mark).

3. KnOTS and Core Space (inner TIES, density 0.2) in factor space (``Merger.factors``: QR / SVD of
   (Σ r)-sized matrices, never an out × in matrix) vs the same method on dense ΔW (the formulas of
   the authors' code, float32: KnOTS' SVD of the concatenated [ΔW_1 … ΔW_4], Core Space's
   projection of each dense ΔW_t onto the cores and back), same modules, one run: time, peak
   resident memory, and the relative Frobenius difference of the results (``--parts factor``
   writes ``results/merge-factor.json``).

Four adapters, r = 32, α = 64, 7 projections per layer (hidden 4096, intermediate 14336, kv 1024).
The PEFT base layers are allocated with ``torch.empty`` (never touched, so never resident).

    python bench/bench_merge.py [--layers 32] [--delta-layers 1] [--parts cat,delta,factor]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lorikit.adapters.state import AdapterState, LoraModule
from lorikit.merge import Merger
from lorikit.merge.sparsify import elect_and_merge, trim
from lorikit.merge.registry import DeltaParams

HIDDEN, INTER, KV, RANK, ALPHA, N = 4096, 14336, 1024, 32, 64.0, 4
SHAPES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV, HIDDEN), "self_attn.v_proj": (KV, HIDDEN),
          "self_attn.o_proj": (HIDDEN, HIDDEN), "mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN),
          "mlp.down_proj": (HIDDEN, INTER)}
TARGETS = [n.split(".")[-1] for n in SHAPES]
WEIGHTS = [0.4, 0.3, 0.4, 0.3]
DELTA_MODULES = ("q_proj", "k_proj", "gate_proj")  # one module of each shape: 4096², 1024 × 4096, 14336 × 4096


def modules(layers: int) -> dict[str, tuple[int, int]]:
    return {f"model.layers.{i}.{n}": s for i in range(layers) for n, s in SHAPES.items()}


def synthetic_adapters(layers: int) -> list[AdapterState]:
    states = []
    for t in range(N):
        gen = torch.Generator().manual_seed(t)
        mods = []
        for name, (out, inp) in modules(layers).items():
            A = (torch.rand(RANK, inp, generator=gen) * 2 - 1) / math.sqrt(inp)
            B = torch.randn(out, RANK, generator=gen) * 1e-3
            mods.append(LoraModule(name, A, B, ALPHA / RANK))
        config = {"peft_type": "LORA", "base_model_name_or_path": "llama-3-8b-shapes", "r": RANK,
                  "lora_alpha": ALPHA, "target_modules": TARGETS}
        states.append(AdapterState.from_modules(mods, config))
    return states


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.mlp = nn.Module(), nn.Module()
        for name, (out, inp) in SHAPES.items():
            parent, leaf = name.split(".")
            setattr(getattr(self, parent), leaf, nn.Linear(inp, out, bias=False, device="meta"))


class _Base(nn.Module):
    def __init__(self, layers: int):
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(_Block() for _ in range(layers))


def peft_model_with(states: list[AdapterState], layers: int):
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    base = _Base(layers).to_empty(device="cpu")  # uninitialised: pages never touched
    cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights=False)
    model = get_peft_model(base, cfg, adapter_name="t0")
    for i in range(1, N):
        model.add_adapter(f"t{i}", cfg)
    for i, state in enumerate(states):
        set_peft_model_state_dict(model, state.tensors, adapter_name=f"t{i}")
    return model


def peak_rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def rss(field: str = "VmRSS") -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def bench_cat(layers: int) -> dict:
    states = synthetic_adapters(layers)
    names = list(modules(layers))
    t = time.perf_counter()
    model = peft_model_with(states, layers)
    peft_load = time.perf_counter() - t
    t = time.perf_counter()
    model.add_weighted_adapter([f"t{i}" for i in range(N)], WEIGHTS, "cat", combination_type="cat")
    peft_add = time.perf_counter() - t
    layers_by_name = {n[len("base_model.model."):]: m for n, m in model.named_modules() if hasattr(m, "lora_A")}
    t = time.perf_counter()
    merger = Merger(states, "cat", WEIGHTS)
    ours_setup = time.perf_counter() - t
    ours_delta = peft_delta = 0.0
    max_diff = 0.0
    for name in names:
        t = time.perf_counter()
        ours = merger.delta(name)
        ours_delta += time.perf_counter() - t
        t = time.perf_counter()
        theirs = layers_by_name[name].get_delta_weight("cat")
        peft_delta += time.perf_counter() - t
        max_diff = max(max_diff, (ours - theirs).abs().max().item())
        del ours, theirs
    lorikit_s = ours_setup + ours_delta
    peft_s = peft_load + peft_add + peft_delta
    return {"layers": layers, "modules": len(names), "lorikit_s": lorikit_s, "peft_s": peft_s,
            "peft_load_s": peft_load, "peft_add_weighted_adapter_s": peft_add, "peft_delta_s": peft_delta,
            "lorikit_delta_s": ours_delta, "speedup": peft_s / lorikit_s,
            "speedup_excluding_peft_load": (peft_add + peft_delta) / lorikit_s, "max_abs_diff": max_diff}


def bench_delta_methods(layers: int) -> list[dict]:
    states = synthetic_adapters(layers)
    names = [n for n in modules(layers) if n.rsplit(".", 1)[-1] in DELTA_MODULES]
    rows = []
    for method in ("task-arithmetic", "ties", "dare-linear", "dare-ties", "magnitude-prune", "emr"):
        merger = Merger(states, method, WEIGHTS, DeltaParams(density=0.2, drop_rate=0.9, seed=0))
        base = rss()
        peak_rss_reset()
        t = time.perf_counter()
        if method == "emr":
            merger.emr_scales()  # pass 1: the global rescalers
        for name in names:
            delta = merger.delta(name, 0 if method == "emr" else None)
            del delta
        seconds = time.perf_counter() - t
        rows.append({"method": method, "modules": len(names), "seconds": seconds,
                     "peak_extra_mib": (rss("VmHWM") - base) / 2**20})
        print(f"  {method:16s} {seconds:7.2f} s  peak +{rows[-1]['peak_extra_mib']:.0f} MiB", flush=True)
    # truncated SVD back to rank 32 (the adapter output), timed on one module
    from lorikit.merge.svd import factor

    merger = Merger(states, "task-arithmetic", WEIGHTS)
    for name in ("model.layers.0.self_attn.k_proj",):  # full SVD of 4096² or larger takes minutes on 2 cores
        delta = merger.delta(name)
        t = time.perf_counter()
        _, residual, total = factor(name, delta, RANK)
        rows.append({"method": f"svd r{RANK} {name.split('.')[-1]} {tuple(delta.shape)}", "modules": 1,
                     "seconds": time.perf_counter() - t, "relative_error": math.sqrt(residual / total)})
        print(f"  {rows[-1]['method']:16s} {rows[-1]['seconds']:7.2f} s", flush=True)
    return rows


def ties_dense(tensors: list[torch.Tensor], density: float = 0.2) -> torch.Tensor:
    return elect_and_merge([trim(t, density) for t in tensors], torch.tensor(WEIGHTS))


def knots_dense(deltas: list[torch.Tensor]) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(torch.cat(deltas, dim=1).double(), full_matrices=False)  # float64, as the authors
    keep = S > 1e-6 * S[0]
    U, S, Vh = U[:, keep], S[keep], Vh[keep]
    width = deltas[0].shape[1]
    return U @ ties_dense([S[:, None] * Vh[:, t * width:(t + 1) * width] for t in range(len(deltas))])


def core_dense(parts: list[LoraModule], deltas: list[torch.Tensor]) -> torch.Tensor:
    U_B = torch.linalg.svd(torch.cat([m.B.double() for m in parts], dim=1), full_matrices=False)[0]
    V_A = torch.linalg.svd(torch.cat([m.A.double() for m in parts], dim=0), full_matrices=False)[2].T
    return U_B @ ties_dense([U_B.T @ d.double() @ V_A for d in deltas]) @ V_A.T


def timed(fn):
    base = rss()
    peak_rss_reset()
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t, (rss("VmHWM") - base) / 2**20


def bench_factor_vs_dense(layers: int, targets: dict[str, tuple[str, ...]]) -> list[dict]:
    states = synthetic_adapters(layers)
    rows = []
    for method in ("knots", "core-space"):
        merger = Merger(states, method, WEIGHTS, DeltaParams(inner="ties", density=0.2))
        for name in [n for n in modules(layers) if n.rsplit(".", 1)[-1] in targets[method]]:
            parts = merger.parts(name)
            merger.factors(name)  # warm-up: one-time library initialisation is not the method's cost
            factors, f_s, f_mib = timed(lambda: merger.factors(name))
            if method == "knots":
                dense, d_s, d_mib = timed(lambda: knots_dense([m.delta() for m in parts]))
            else:
                dense, d_s, d_mib = timed(lambda: core_dense(parts, [m.delta() for m in parts]))
            diff = float((factors.delta().double() - dense).norm() / dense.norm())
            rows.append({"method": method, "module": name.split(".", 3)[-1], "shape": list(dense.shape),
                         "factor_s": f_s, "dense_s": d_s, "speedup": d_s / f_s, "factor_peak_mib": f_mib,
                         "dense_peak_mib": d_mib, "memory_ratio": d_mib / max(f_mib, 1.0),
                         "relative_difference": diff})
            del dense, factors
            r = rows[-1]
            print(f"  {method:10s} {r['module']:16s} factor {f_s:6.2f} s {f_mib:7.0f} MiB | dense {d_s:7.2f} s "
                  f"{d_mib:7.0f} MiB | {r['speedup']:6.0f}× faster, {r['memory_ratio']:5.0f}× less memory | "
                  f"rel. diff {diff:.1e}", flush=True)
    return rows


def per_merge_totals(rows: list[dict]) -> list[dict]:
    """Whole-merge figures per method over the modules measured: times add up (modules run one after
    another), the peak is the largest module's; on small modules a fixed floor caps the per-module ratio."""
    totals = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        f_s, d_s = sum(r["factor_s"] for r in mine), sum(r["dense_s"] for r in mine)
        f_mib, d_mib = max(r["factor_peak_mib"] for r in mine), max(r["dense_peak_mib"] for r in mine)
        totals.append({"method": method, "modules": [r["module"] for r in mine], "factor_s": f_s, "dense_s": d_s,
                       "speedup": d_s / f_s, "factor_peak_mib": f_mib, "dense_peak_mib": d_mib,
                       "memory_ratio": d_mib / max(f_mib, 1.0)})
        t = totals[-1]
        print(f"  {method:10s} all {len(mine)} module(s): factor {f_s:6.2f} s, peak {f_mib:.0f} MiB | dense "
              f"{d_s:7.2f} s, peak {d_mib:.0f} MiB | {t['speedup']:.0f}× faster, {t['memory_ratio']:.0f}× less memory",
              flush=True)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=32, help="layers in the cat comparison (both sides)")
    ap.add_argument("--delta-layers", type=int, default=1, help="layers for the delta-space methods")
    ap.add_argument("--factor-layers", type=int, default=1, help="layers for the factor vs dense comparison")
    ap.add_argument("--knots-modules", default="k_proj,v_proj",
                    help="projections for KnOTS factor vs dense (dense KnOTS is a float64 SVD of out × 4·in: "
                         "minutes for a 1024 × 4096 module on 2 loaded cores, an hour for 4096 × 4096)")
    ap.add_argument("--core-modules", default="q_proj,k_proj,gate_proj,down_proj",
                    help="projections for Core Space factor vs dense")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the factor vs dense comparison, both sides (default 1: on a shared, "
                         "overloaded 2-core machine two OpenMP threads make small SVDs ~50× slower)")
    ap.add_argument("--parts", default="cat,delta,factor", help="which comparisons to run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "merge.json"))
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    torch.manual_seed(0)
    import peft  # noqa: F401  (imported before timing: its import takes seconds)

    if "factor" in parts:
        if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # big buffers via mmap: freed memory leaves RSS,
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")  # so each VmHWM peak is that step's own
            os.execve(sys.executable, [sys.executable, *sys.argv], env)
        torch.set_num_threads(args.threads)
        targets = {"knots": tuple(args.knots_modules.split(",")), "core-space": tuple(args.core_modules.split(","))}
        load_at_start = os.getloadavg()
        print(f"factor space vs dense ΔW, inner TIES, 4 adapters r{RANK}, {args.factor_layers} layer(s), {targets}; "
              f"{args.threads} thread(s); load average {load_at_start}", flush=True)
        rows = bench_factor_vs_dense(args.factor_layers, targets)
        totals = per_merge_totals(rows)
        out = Path(args.out).with_name("merge-factor.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows, "totals": totals, "load_average_at_start": load_at_start,
                                   "load_average_at_end": os.getloadavg(),
                                   "threads": torch.get_num_threads(), "torch": torch.__version__}, indent=2) + "\n")
        print(f"written {out}")
    if not parts & {"cat", "delta"}:
        return
    print(f"cat → full ΔW, 4 adapters r{RANK}, {args.layers} layers × 7 projections (LLaMA-3-8B shapes)", flush=True)
    cat = bench_cat(args.layers)
    print(f"  lorikit {cat['lorikit_s']:.2f} s | PEFT {cat['peft_s']:.2f} s (load {cat['peft_load_s']:.2f}, "
          f"add_weighted_adapter {cat['peft_add_weighted_adapter_s']:.2f}, ΔW {cat['peft_delta_s']:.2f}) | "
          f"speed-up {cat['speedup']:.2f}× ({cat['speedup_excluding_peft_load']:.2f}× without loading) | "
          f"max |diff| {cat['max_abs_diff']:.2e}", flush=True)
    print(f"delta-space methods → full ΔW, 4 adapters, {args.delta_layers} layer(s) × {DELTA_MODULES}", flush=True)
    delta = bench_delta_methods(args.delta_layers)
    result = {"cat": cat, "delta_methods": delta, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
