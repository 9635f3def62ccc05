"""Collect a study's results into bench/results/ and check that RESULTS.md quotes them exactly.

    python bench/bench_study.py bench/studies/headline.yaml --workdir runs/headline --name headline
    python bench/bench_study.py --verify                           # recompute every quoted table

Collect: recomputes the study's table from the per-item outcomes of every finished eval (a partly
finished study is summarised over the seeds every method has finished) and writes
``bench/results/science-NAME-outcomes.json.gz`` (the outcomes: item id, correct, chosen and gold
answer of every eval, each training's early-stopping record), ``science-NAME.json`` (the study's
numbers, per-stage wall times by kind — with ``--resume-from`` those its file recorded elsewhere too,
and the count of stages with no recorded wall time — the load average), ``science-NAME-table.md`` and the figures
``science-NAME-primary.png`` (the primary endpoint run by run), ``-interference.png`` (and
``-continual.png`` where it has a continual arm, ``-prediction.png`` where it has pairwise merges).

Progress (``--progress``): while a study runs, the per-item outcomes of every eval finished so far
and the early-stopping record of every finished training go to ``science-NAME-progress.json.gz``
(no table: a table waits for whole seeds), so what has been measured is committed as it finishes,
with every finished stage's kind and wall time (``stage_seconds``: a study resumed on other machines
still adds up what it cost). With a study file that names ``resume_from``, the committed outcomes
are carried over and the stages run again here are compared with them.

Verify: bench/RESULTS.md quotes each study's table between ``<!-- study:NAME -->`` and
``<!-- /study:NAME -->``. ``--verify`` recomputes every quoted block from the committed outcomes
file alone (no adapters, no model) and exits 1, with a diff, if a single character differs.
``--quote NAME`` writes that block from ``science-NAME-outcomes.json.gz`` (the markers must be in
place: where a table belongs in the prose is the author's choice).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from lorikit.analysis.study import report
from lorikit.analysis.study.outcomes import collect, load
from lorikit.analysis.study.summary import summarize
from lorikit.errors import LorikitError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
BLOCK = re.compile(r"<!-- study:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /study:(?P=name) -->", re.S)


def outcomes_path(results: Path, name: str) -> Path:
    return results / f"science-{name}-outcomes.json.gz"


def quoted(study: dict) -> str:
    """The markdown RESULTS.md quotes for a study: its table, headings one level down, no figures."""
    text = report.markdown(study, figures=False)
    return re.sub(r"^(#+) ", r"\1## ", text, flags=re.M).rstrip("\n") + "\n"


def whole_seeds(table_settings: dict, workdir: Path, archived: set[str] = frozenset()) -> tuple[dict, dict, list[str]]:
    """The layout restricted to the seeds whose every eval has finished (here or in ``archived``), for every method."""
    runs = table_settings["runs"]

    def finished(value) -> bool:
        if isinstance(value, dict):
            return all(finished(v) for v in value.values())
        if isinstance(value, str) and value.startswith("$"):
            name = value[1:].split("/")[0]
            return (workdir / name / "lorikit-stage.json").is_file() or name in archived
        return True  # task names, weights

    seeds = [s for s in next(iter(runs.values())) if all(finished(by_seed[s]) for by_seed in runs.values())]
    resolve = lambda v: ({k: resolve(x) for k, x in v.items()} if isinstance(v, dict)  # noqa: E731
                         else str(workdir / v[1:]) if isinstance(v, str) and v.startswith("$") else v)
    kept = {m: {s: resolve(by_seed[s]) for s in seeds} for m, by_seed in runs.items()}
    return kept, resolve(table_settings["base"]), seeds


def _config(config: str, workdir: str | None, resume_from: str | None):
    from lorikit.study import load_study_config

    return load_study_config(config, **({"workdir": workdir} if workdir else {}),
                             **({"resume_from": resume_from} if resume_from else {}))


def collect_study(config: str, workdir: str | None, name: str, results: Path, resume_from: str | None = None) -> int:
    from lorikit.study import study_recipe

    from lorikit.pipeline.recipe import parse_recipe
    from lorikit.study.resume import settled_results

    cfg = _config(config, workdir, resume_from)
    root = Path(cfg.workdir)
    recipe = study_recipe(cfg)
    table = recipe["stages"]["table"]
    archive = load(cfg.resume_from) if cfg.resume_from else None
    if (root / "table" / "outcomes.json.gz").is_file():  # the study finished: its own table's outcomes
        store = load(root / "table" / "outcomes.json.gz")
        seeds = list(next(iter(store.layout["runs"].values())))
    else:  # part-way: every seed that every method has finished (a continual arm waits for the table stage)
        archived = settled_results(cfg, parse_recipe(recipe, workdir=root)) if archive else set()
        runs, base, seeds = whole_seeds(table, root, archived)
        if not seeds:
            raise SystemExit(f"{root}: no seed has finished for every method yet")
        declared = {k: table[k] for k in ("primary", "alpha", "equivalence_margin", "learned_at")}
        store = collect(runs, base, None, declared=declared, archive=archive)
    study = summarize(store)
    by_kind: dict[str, list[float]] = defaultdict(list)
    recorded = set()
    for rec in root.glob("*/lorikit-stage.json"):
        r = json.loads(rec.read_text())
        by_kind[r["kind"]].append(r["seconds"])
        recorded.add(rec.parent.name)
    if archive:  # the wall times the committed file recorded on other machines count too
        for stage, (kind, seconds) in (archive.data.get("stage_seconds") or {}).items():
            if stage not in recorded and seconds is not None:
                by_kind[kind].append(seconds)
                recorded.add(stage)
    unrecorded = len({n for n, st in recipe["stages"].items() if st["kind"] != "study-table"} - recorded)
    results.mkdir(parents=True, exist_ok=True)
    store.save(outcomes_path(results, name))
    meta = {"workdir": str(root), "seeds_complete": seeds,
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "cpu_count": os.cpu_count(),
            "seconds_by_kind": {k: {"n": len(v), "total": round(sum(v), 1), "mean": round(sum(v) / len(v), 1)}
                                for k, v in sorted(by_kind.items())},
            "stages_without_wall_time": unrecorded,
            "study": study}
    (results / f"science-{name}.json").write_text(json.dumps(report._clean(meta), indent=1) + "\n")
    (results / f"science-{name}-table.md").write_text(quoted(study))
    figures = []
    if report.have_matplotlib():
        from lorikit.analysis.study.figures import write_figures

        figures = [p.name for p in write_figures(results, study, prefix=f"science-{name}-")]
    print(f"{root}: seeds complete for every method: {', '.join(seeds)}; {meta['uptime']}")
    print("| stage kind | stages | total s | mean s |\n|---|---:|---:|---:|")
    for k, v in meta["seconds_by_kind"].items():
        print(f"| {k} | {v['n']} | {v['total']} | {v['mean']} |")
    if unrecorded:
        print(f"({unrecorded} stages of the study have no recorded wall time: run where no record survived)")
    print("\n" + quoted(study))
    print(f"written {outcomes_path(results, name)}, science-{name}.json, science-{name}-table.md"
          + "".join(f", {f}" for f in figures))
    return 0


def collect_progress(config: str, workdir: str | None, name: str, results: Path, resume_from: str | None = None) -> int:
    from lorikit.pipeline import plan_recipe
    from lorikit.pipeline.recipe import parse_recipe
    from lorikit.pipeline.runner import read_record
    from lorikit.study import study_recipe

    cfg = _config(config, workdir, resume_from)
    recipe = parse_recipe(study_recipe(cfg), source=config, workdir=cfg.workdir)
    plans = [p for p in plan_recipe(recipe, resume=True) if p.status == "done"]
    finished = {p.name: str(p.out) for p in plans if p.kind in ("eval", "train")}
    store = collect({"finished": finished}, {}, None)
    data = store.data
    # every finished stage's wall time and kind, so a study run across machines still adds up its cost
    data["stage_seconds"] = {p.name: [p.kind, (read_record(p.out) or {}).get("seconds")] for p in plans}
    # each result's stage hash: --resume-from takes a result only for a stage whose hash is still the same
    data["stage_hashes"] = {p.name: p.hash for p in plans}
    if cfg.resume_from:  # the committed outcomes carry over; a stage run again here is compared, then kept from here
        old = load(cfg.resume_from).data
        for part in ("evals", "trainings"):
            again = sorted(n for n in set(old[part]) & set(data[part])  # the same stage, not one of other settings
                           if old.get("stage_hashes", {}).get(n) == data["stage_hashes"][n])
            same = sum(old[part][n] == data[part][n] for n in again)
            print(f"{part} run again here that {cfg.resume_from} also holds: {len(again)}, identical: {same}"
                  + "".join(f"\n  differs: {n}" for n in again if old[part][n] != data[part][n]))
            data[part] = {**old[part], **data[part]}
        data["stage_seconds"] = {**old.get("stage_seconds", {}), **data["stage_seconds"]}
        data["stage_hashes"] = {**old.get("stage_hashes", {}), **data["stage_hashes"]}
        data["layout"]["runs"]["finished"] = {n: n for part in ("evals", "trainings") for n in data[part]}
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"science-{name}-progress.json.gz"
    store.save(path)
    print(f"{path}: {len(data['evals'])} evals ({sum(len(e['ids']) for e in data['evals'].values())} "
          f"items), {len(data['trainings'])} trainings of {len(recipe.stages)} stages")
    return 0


def verify(results_md: Path, results: Path) -> int:
    """Recompute every quoted study block of ``results_md`` from its outcomes file; 1 on any mismatch."""
    text = results_md.read_text()
    blocks = list(BLOCK.finditer(text))
    if not blocks:
        print(f"{results_md}: no <!-- study:NAME --> blocks to verify", file=sys.stderr)
        return 1
    failed = 0
    for m in blocks:
        name, body = m["name"], m["body"]
        path = outcomes_path(results, name)
        if not path.is_file():
            print(f"study:{name}: {path} is missing", file=sys.stderr)
            failed += 1
            continue
        expected = quoted(summarize(load(path)))
        if body != expected:
            failed += 1
            diff = difflib.unified_diff(body.splitlines(), expected.splitlines(), "RESULTS.md", "recomputed", lineterm="")
            print(f"study:{name}: RESULTS.md differs from the numbers recomputed from {path.name}:", file=sys.stderr)
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            print(f"study:{name}: {len(expected.splitlines())} lines recomputed from {path.name}: identical")
    return 1 if failed else 0


def quote(results_md: Path, results: Path, name: str) -> int:
    """Write study ``name``'s block of ``results_md`` from its committed outcomes; 2 without its markers."""
    path = outcomes_path(results, name)
    text = results_md.read_text()
    block = next((m for m in BLOCK.finditer(text) if m["name"] == name), None)
    if block is None:
        print(f"bench_study: error: {results_md}: no <!-- study:{name} --> ... <!-- /study:{name} --> markers; "
              "put them where the table belongs", file=sys.stderr)
        return 2
    if not path.is_file():
        print(f"bench_study: error: {path}: missing (collect the study with --name {name} first)", file=sys.stderr)
        return 2
    body = quoted(summarize(load(path)))
    tmp = results_md.with_suffix(".md.tmp")
    tmp.write_text(text[:block.start("body")] + body + text[block.end("body"):])
    tmp.replace(results_md)
    print(f"study:{name}: {len(body.splitlines())} lines quoted from {path.name} into {results_md}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", help="the study's YAML file (its stages are read from the workdir)")
    ap.add_argument("--workdir", help="the study's workdir, if not the config's")
    ap.add_argument("--resume-from", help="the committed outcomes the study was resumed from (lorikit study "
                    "--resume-from), if not the config's: its results count beside the workdir's")
    ap.add_argument("--name", help="the study's name in bench/results (science-NAME-*)")
    ap.add_argument("--verify", action="store_true", help="recompute every study block of RESULTS.md; exit 1 on a mismatch")
    ap.add_argument("--progress", action="store_true", help="with STUDY.yaml --name: commit what has finished so far "
                    "(per-item outcomes, early-stopping records) to science-NAME-progress.json.gz; no table")
    ap.add_argument("--quote", metavar="NAME", help="write study NAME's block of RESULTS.md (between its markers) "
                    "from science-NAME-outcomes.json.gz")
    ap.add_argument("--results-md", default=str(RESULTS))
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    if args.verify:
        return verify(Path(args.results_md), Path(args.results))
    if args.quote:
        return quote(Path(args.results_md), Path(args.results), args.quote)
    if not args.config or not args.name:
        ap.error("give STUDY.yaml [--workdir DIR] --name NAME to collect, --quote NAME, or --verify")
    try:
        if args.progress:
            return collect_progress(args.config, args.workdir, args.name, Path(args.results), args.resume_from)
        return collect_study(args.config, args.workdir, args.name, Path(args.results), args.resume_from)
    except LorikitError as exc:  # a missing or malformed study file: one line, as lorikit's commands say it
        print(f"bench_study: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
