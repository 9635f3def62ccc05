"""Re-read the real-data recipe results (bench/results/recipes*.json) with intervals.

    python bench/bench_reanalysis.py [--out bench/results/reanalysis.json]

Those runs kept scores, not per-item outcomes, so a paired test cannot be computed exactly; what
the marginals do fix is a *lower bound* on McNemar's exact p: with k₁ and k₂ items right out of
n, at least |k₁ − k₂| items are discordant, and p is smallest when all discordant items go one
way, p ≥ min(1, 2 · 0.5^|k₁ − k₂|). When one side is 0 or n the pairing is forced and the bound
is the exact p. A difference whose best-case p is ≥ 0.05 cannot be significant however the
items pair up. Each score also gets its Wilson 95 % interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lorikit.analysis.stats import wilson  # noqa: E402

FILES = {"20 steps": "bench/results/recipes.json", "50 steps": "bench/results/recipes-50.json"}
MERGE_PAIRS = [(m, merge, t) for m in ("lora", "lori-d", "lori-s") for merge in ("cat3", "cat4")
               for t in ("math", "code", "nlu", "safety")]


def compare(a: dict, b: dict) -> dict:
    n = a["n"]
    k1, k2 = round(a["score"] * n), round(b["score"] * b["n"])
    forced = k1 in (0, n) or k2 in (0, n)
    p = min(1.0, 2 * 0.5 ** abs(k1 - k2))
    return {"n": n, "a": k1, "b": k2, "a_ci": wilson(k1, n).to_json(), "b_ci": wilson(k2, n).to_json(),
            "best_case_p": p, "p_is_exact": forced, "can_be_significant": p < 0.05}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/reanalysis.json")
    args = ap.parse_args()
    rows = []
    for budget, f in FILES.items():
        evals = json.loads((ROOT / f).read_text())["recipes"]["real-merge"]["evals"]
        for method, merge, task in MERGE_PAIRS:
            single, merged = evals.get(f"eval-{method}-{task}"), evals.get(f"eval-{method}-{merge}-{task}")
            if single and merged:
                rows.append({"budget": budget, "what": f"{method} {task}: single vs {merge}",
                             **compare(single, merged)})
        for method in ("lori-d", "lori-s"):
            for task in ("nlu", "safety"):
                rows.append({"budget": budget, "what": f"{task} single: {method} vs lora",
                             **compare(evals[f"eval-{method}-{task}"], evals[f"eval-lora-{task}"])})
    Path(args.out).write_text(json.dumps({"source": list(FILES.values()), "rows": rows}, indent=1) + "\n")
    print("| budget | comparison | n | a | b | a [Wilson 95 %] | b [Wilson 95 %] | McNemar p ≥ | can be significant |")
    print("|---|---|---:|---:|---:|---|---|---:|---|")
    for r in rows:
        if r["a"] == r["b"] == 0:
            continue
        ci = lambda c: f"{c['estimate']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"  # noqa: E731
        p = f"{r['best_case_p']:.2g}" + (" (exact)" if r["p_is_exact"] else "")
        print(f"| {r['budget']} | {r['what']} | {r['n']} | {r['a']} | {r['b']} | {ci(r['a_ci'])} | {ci(r['b_ci'])} | "
              f"{p} | {'yes' if r['can_be_significant'] else 'no'} |")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
