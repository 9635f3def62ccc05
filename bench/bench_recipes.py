"""Real-data benchmark: run the recipes in bench/recipes/ and collect their tables.

    python bench/bench_recipes.py [--run] [--recipes real-merge real-osrm real-continual]
                                  [--set KEY=VALUE ...] [--workdir DIR] [--json bench/results/recipes.json]

With ``--run`` each recipe is run with ``lorikit run RECIPE --resume`` (the recipes share workdir
``runs/real``, so stages finished by one recipe are reused by the next); without it the script only
collects what is already there. It prints every score stage's table (``scores-merge``,
``scores-osrm``, ``forgetting``), the per-eval scores with their sample size, the overall matrices of
every report stage (subspace overlap, ΔW cosine, output shift, mask Jaccard) and wall time per stage
kind, and writes all of it as JSON. ``--workdir`` runs and collects another budget side by side (e.g.
``--set max_steps=50 --workdir runs/real-50``). Run from the repository root (the recipes read
``../shared/datasets``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

from lorikit.analysis.report import markdown_matrix

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["real-merge", "real-osrm", "real-continual"]


def run(recipe: Path, overrides: list[str], workdir: str | None) -> float:
    cmd = [sys.executable, "-m", "lorikit", "run", str(recipe), "--resume"]
    if workdir:
        cmd += ["--workdir", workdir]
    for item in overrides:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def _report_summary(folder: Path) -> dict:
    analysis = json.loads((folder / "analysis.json").read_text())
    out = {}
    if "comparison" in analysis:
        out["adapters"] = analysis["comparison"]["adapters"]
        out |= analysis["comparison"]["overall"]
    if "output_shift" in analysis:
        shift = analysis["output_shift"]
        out["output_shift"] = {"adapters": shift["adapters"], "tasks": shift["tasks"], "overall": shift["overall"]}
    if "masks" in analysis:
        masks = analysis["masks"]
        out["mask_jaccard"] = {"names": masks["masks"], "density": masks["density"], "overall": masks["overall_jaccard"]}
    return out


def collect(recipe: Path, workdir_override: str | None = None) -> dict:
    spec = yaml.safe_load(recipe.read_text())
    workdir = ROOT / (workdir_override or spec["workdir"])
    stages, tables, evals, reports = {}, {}, {}, {}
    seconds_by_kind: dict[str, float] = defaultdict(float)
    for name, stage in spec["stages"].items():
        record_path = workdir / name / "lorikit-stage.json"
        if not record_path.exists():
            stages[name] = {"kind": stage["kind"], "status": "not run"}
            continue
        record = json.loads(record_path.read_text())
        stages[name] = {"kind": stage["kind"], "seconds": record["seconds"], "finished": record["finished"]}
        seconds_by_kind[stage["kind"]] += record["seconds"]
        if stage["kind"] == "eval":
            result = json.loads((workdir / name / "result.json").read_text())
            evals[name] = {"task": result["task"], "metric": result.get("metric"), "score": result["score"],
                           "n": result["n"]}
        elif stage["kind"] == "scores":
            tables[name] = (workdir / name / "table.md").read_text()
        elif stage["kind"] == "analyze":
            reports[name] = _report_summary(workdir / name)
    return {"recipe": str(recipe.relative_to(ROOT)), "workdir": str(workdir.relative_to(ROOT)),
            "defaults": spec.get("defaults"), "tables": tables, "evals": evals, "reports": reports, "stages": stages,
            "seconds_by_kind": {k: round(v, 1) for k, v in seconds_by_kind.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run the recipes (with --resume) before collecting")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, help="recipe names in bench/recipes/")
    parser.add_argument("--set", action="append", dest="overrides", default=[], metavar="KEY=VALUE",
                        help="passed to lorikit run (the same in every recipe, so shared stages stay shared)")
    parser.add_argument("--workdir", default=None, help="override the recipes' shared workdir (runs/real)")
    parser.add_argument("--json", default=str(ROOT / "bench/results/recipes.json"))
    args = parser.parse_args()
    report = {"overrides": args.overrides, "recipes": {}}
    for name in args.recipes:
        recipe = ROOT / "bench/recipes" / f"{name}.yaml"
        wall = run(recipe, args.overrides, args.workdir) if args.run else None
        report["recipes"][name] = collect(recipe, args.workdir) | {"wall_seconds": wall}
    for name, result in report["recipes"].items():
        print(f"\n## {name}  (stage seconds by kind: {result['seconds_by_kind']})")
        for table_name, table in result["tables"].items():
            print(f"\n### {table_name}\n\n{table}")
        not_run = [s for s, v in result["stages"].items() if v.get("status") == "not run"]
        if not_run:
            print(f"not run: {', '.join(not_run)}")
        for report_name, summary in result["reports"].items():
            print(f"\n### {report_name} (overall, mean over modules)")
            names = summary.get("adapters", [])
            for key in ("row_overlap", "col_overlap", "cosine"):
                if key in summary:
                    print(f"\n{key}:\n" + markdown_matrix(summary[key], names, names))
            if "output_shift" in summary:
                shift = summary["output_shift"]
                print("\noutput shift ‖ΔW h‖/‖W h‖ (row = adapter, column = task data):\n"
                      + markdown_matrix(shift["overall"], shift["adapters"], shift["tasks"], ".4f"))
            if "mask_jaccard" in summary:
                jac = summary["mask_jaccard"]
                print("\nmask Jaccard:\n" + markdown_matrix(jac["overall"], jac["names"], jac["names"]))
        print("\n| eval stage | task | metric | score | n |\n|---|---|---|---|---|")
        for stage, e in result["evals"].items():
            print(f"| {stage} | {e['task']} | {e['metric']} | {e['score']:.3f} | {e['n']} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
