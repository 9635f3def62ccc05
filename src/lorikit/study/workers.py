"""A study's seeds in several processes at once (``lorikit study --workers N``).

The stages every seed shares (the OSRM statistics, the base model's evaluations) run first, here;
then N worker processes each run the stages of their share of the seeds (``seeds[k::N]``), with
``cores // N`` threads each; last, this process runs what is left of the whole recipe — the table.
Every stage is the one a single process would run (same settings, same hash, same folder), so the
workdir resumes either way and the table is the same function of the same outcomes.

Why: on a 2-core CPU two one-thread processes train faster than one two-thread process runs them
in turn — a study's batches are small, so the second thread adds little to a step, and one
process's model loads and evaluations overlap the other's training (bench/RESULTS.md,
*Throughput*, ``bench/bench_study_workers.py``). On an oversubscribed machine one thread per
process also avoids the OpenMP barrier stalls of two.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable

import yaml

from ..errors import LorikitError
from ..pipeline.recipe import Recipe, parse_recipe
from ..pipeline.runner import run_recipe
from .config import StudyConfig
from .recipe import study_recipe

logger = logging.getLogger(__name__)
FOLDER = "workers"  # inside the workdir: each worker's settings and log
TABLE = "table"


def seed_shares(seeds: list[int], workers: int) -> list[list[int]]:
    """Worker k takes seeds k, k + N, ... (seed-major recipes make each share whole seeds)."""
    return [seeds[k::workers] for k in range(workers) if seeds[k::workers]]


def threads_per_worker(workers: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // workers)


def _settings(cfg: StudyConfig, seeds: list[int]) -> dict:
    values = {**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, "seeds": seeds, "workers": 1}
    return json.loads(json.dumps(values))  # plain types: a study file's mappings come as the loader's own dict type


def run_worker(settings_file: str) -> int:
    """Entry of one worker process: the stages its parent gave it (its seeds'; no table)."""
    job = yaml.safe_load(Path(settings_file).read_text())
    cfg = StudyConfig(**job["config"])
    recipe = parse_recipe(study_recipe(cfg), source=f"lorikit study worker {settings_file}", workdir=cfg.workdir)
    run_recipe(recipe, resume=not job["fresh"], overwrite=job["fresh"], only=job["stages"], echo=logger.info)
    return 0


def run_parallel(cfg: StudyConfig, full: Recipe, fresh: bool, echo: Callable[[str], None]) -> None:
    """Shared stages here, each seed share in its own process, then the table here (``full``: the
    whole study's recipe)."""
    shares = seed_shares(list(cfg.seeds), cfg.workers)
    per_worker = [list(study_recipe(replace(cfg, seeds=s, workers=1))["stages"]) for s in shares]
    shared = set.intersection(*map(set, per_worker)) - {TABLE}
    run_recipe(full, resume=not fresh, overwrite=fresh, only=[n for n in full.stages if n in shared], echo=echo)

    folder = Path(cfg.workdir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_worker(len(shares)))}
    procs = []
    try:
        for k, seeds in enumerate(shares):
            settings = folder / f"worker-{k}.yaml"
            stages = [n for n in per_worker[k] if n not in shared | {TABLE}]
            settings.write_text(yaml.safe_dump({"config": _settings(cfg, seeds), "stages": stages, "fresh": fresh},
                                               sort_keys=False))
            log = folder / f"worker-{k}.log"
            echo(f"lorikit study: worker {k}: seeds {seeds}, {env['OMP_NUM_THREADS']} thread(s), log {log}")
            with log.open("w") as fh:
                procs.append(subprocess.Popen([sys.executable, "-m", "lorikit.study.workers", str(settings)],
                                              stdout=fh, stderr=subprocess.STDOUT, env=env))
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:  # interrupted: no orphan keeps writing into the workdir
            if p.poll() is None:
                p.terminate()
                p.wait()
    failed = [k for k, code in enumerate(codes) if code]
    if failed:
        k = failed[0]
        raise LorikitError(f"--workers: worker {k} (seeds {shares[k]}) failed (exit {codes[k]}); its log: "
                           f"{folder / f'worker-{k}.log'}; finished stages are kept, run again to resume")
    # the table is hashed from settings, not from its parents' outputs: a fresh study rewrites it
    run_recipe(full, resume=not fresh, overwrite=fresh, only=[TABLE] if fresh else None, echo=echo)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the worker's log file is its progress
    sys.exit(run_worker(sys.argv[1]))
