"""A study in several processes at once (``lorikit study --workers N``).

The stages every seed shares (the OSRM statistics, the base model's evaluations) run first, here.
The rest falls into independent groups: stages joined by parent links, i.e. one method's trainings,
masks, merges and evaluations for one seed (LoRI-S together with the LoRI-D run whose mask it
retrains). N worker processes, ``cores // N`` threads each, take groups from one queue (``queue_order``:
groups a resumed run started first, then seed by seed and the largest remaining work (trainings not
yet done) of a seed first), each claiming a group with a file created
exclusively, so a process that finishes early takes the next group instead of idling while another
still has whole seeds to do. Last, this process runs what is left of the recipe: the table. Every
stage is the one a single process would run (same settings, same hash, same folder), so the workdir
resumes either way and the table is the same function of the same outcomes.

Why: on a 2-core CPU two one-thread processes train faster than one two-thread process runs them
in turn — a study's batches are small, so the second thread adds little to a step, and one
process's model loads and evaluations overlap the other's training (bench/RESULTS.md,
*Throughput*, ``bench/bench_study_workers.py``). On an oversubscribed machine one thread per
process also avoids the OpenMP barrier stalls of two. A queue rather than fixed seed shares: five
seeds split 3 + 2 leave one core idle for a fifth of the study.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable

import yaml

from ..errors import LorikitError
from ..pipeline.recipe import Recipe, parse_recipe
from ..pipeline.runner import plan_recipe, run_recipe
from .config import StudyConfig
from .recipe import study_recipe

logger = logging.getLogger(__name__)
FOLDER = "workers"  # inside the workdir: each worker's settings and log
TABLE = "table"


def stage_groups(recipe: Recipe, shared: set[str]) -> list[list[str]]:
    """The stages outside ``shared`` in groups joined by parent links (no stage of one group is a parent of
    another's), each in recipe order, the groups in the order of their first stage."""
    order = [n for n in recipe.order() if n not in shared]
    root = {n: n for n in order}

    def find(n: str) -> str:
        while root[n] != n:
            root[n] = root[root[n]]
            n = root[n]
        return n

    for name in order:
        for parent in recipe.stages[name].parents:
            if parent in root:
                root[find(parent)] = find(name)
    groups: dict[str, list[str]] = {}
    for name in order:
        groups.setdefault(find(name), []).append(name)
    return list(groups.values())


def stages_by_seed(cfg: StudyConfig) -> dict[int, set[str]]:
    """Each seed's stages: those of the study run with that seed alone."""
    return {s: set(study_recipe(replace(cfg, seeds=[s], workers=1))["stages"]) for s in cfg.seeds}


def shared_stages(by_seed: dict[int, set[str]]) -> set[str]:
    """The stages every seed's recipe has (OSRM statistics, base-model evaluations), the table aside;
    ``by_seed``: ``stages_by_seed(cfg)``."""
    return set.intersection(*by_seed.values()) - {TABLE}


def claim(folder: Path, index: int) -> bool:
    """True for the one process that creates ``folder/group-<index>`` first."""
    try:
        os.close(os.open(folder / f"group-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def threads_per_worker(workers: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // workers)


def _settings(cfg: StudyConfig, seeds: list[int]) -> dict:
    values = {**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, "seeds": seeds, "workers": 1}
    return json.loads(json.dumps(values))  # plain types: a study file's mappings come as the loader's own dict type


def run_worker(settings_file: str) -> int:
    """Entry of one worker process: the groups it claims first, in the queue's order (no table)."""
    job = yaml.safe_load(Path(settings_file).read_text())
    cfg = StudyConfig(**job["config"])
    recipe = parse_recipe(study_recipe(cfg), source=f"lorikit study worker {settings_file}", workdir=cfg.workdir)
    claims = Path(job["claims"])
    from ..models.loading import keep_base_loaded

    with keep_base_loaded():  # one read of the base model for all the groups this worker runs
        for index, group in enumerate(job["groups"]):
            if claim(claims, index):
                logger.info("lorikit study worker: group %d: %s ... (%d stages)", index, group[0], len(group))
                run_recipe(recipe, resume=not job["fresh"], overwrite=job["fresh"], only=group, echo=logger.info)
    return 0


def remaining_work(group: list[str], plans: dict) -> float:
    """A group's share of what is left: its trainings not done count 1, other stages 0.1."""
    return sum((1.0 if plans[n].kind == "train" else 0.1) for n in group if plans[n].status != "done")


def queue_order(groups: list[list[str]], plans: dict, rank: dict[str, int]) -> list[list[str]]:
    """The order workers take ``groups`` in: groups a run here already started first (a stage done or a
    training with a resume state: a resumed study finishes what it began before it opens new groups,
    so they settle sooner), then seed by seed (a partial study is summarised over whole seeds), the
    largest remaining work of a seed first, so that the last groups to start are small ones.
    ``rank``: stage name -> its seed's position."""
    from ..train.checkpoint import resume_step  # the worker's imports, not the CLI's

    def started(group: list[str]) -> bool:  # a stage finished, or a training with a resume state
        return any(plans[n].status == "done" or
                   (plans[n].kind == "train" and resume_step(plans[n].out) is not None)
                   for n in group)

    return sorted(groups, key=lambda g: (not started(g), rank[g[0]], -remaining_work(g, plans)))


def run_parallel(cfg: StudyConfig, full: Recipe, fresh: bool, echo: Callable[[str], None],
                 needed: list[str] | None = None, settled: set[str] | frozenset[str] = frozenset()) -> None:
    """Shared stages here, the groups in N processes, then the table here (``full``: the whole study's recipe;
    ``needed``: only these stages run, the table's other inputs being ``settled``, see study/resume.py)."""
    by_seed = stages_by_seed(cfg)
    shared = shared_stages(by_seed)
    keep = set(full.stages) if needed is None else set(needed)
    first = [n for n in full.stages if n in shared and n in keep]
    plans = {p.name: p for p in (run_recipe(full, resume=not fresh, overwrite=fresh, only=first, echo=echo) if first
                                 else plan_recipe(full, resume=not fresh, overwrite=fresh))}
    groups = [g for g in ([n for n in group if n in keep] for group in stage_groups(full, shared | {TABLE})) if g]
    rank = {name: i for i, s in enumerate(cfg.seeds) for name in by_seed[s] - shared}
    groups = queue_order(groups, plans, rank)
    folder = Path(cfg.workdir) / FOLDER
    claims = folder / f"claims-{os.getpid()}"
    claims.mkdir(parents=True, exist_ok=True)
    workers = min(cfg.workers, len(groups)) or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_worker(workers))}
    procs = []
    settings = folder / "queue.yaml"
    settings.write_text(yaml.safe_dump({"config": _settings(cfg, list(cfg.seeds)), "groups": groups,
                                        "claims": str(claims), "fresh": fresh}, sort_keys=False))
    echo(f"lorikit study: {len(groups)} groups of stages, {workers} workers, {env['OMP_NUM_THREADS']} thread(s) each, "
         f"logs in {folder}")
    try:
        for k in range(workers):
            with (folder / f"worker-{k}.log").open("w") as fh:
                procs.append(subprocess.Popen([sys.executable, "-m", "lorikit.study.workers", str(settings)],
                                              stdout=fh, stderr=subprocess.STDOUT, env=env))
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:  # interrupted: no orphan keeps writing into the workdir
            if p.poll() is None:
                p.terminate()
                p.wait()
        shutil.rmtree(claims, ignore_errors=True)
    failed = [k for k, code in enumerate(codes) if code]
    if failed:
        k = failed[0]
        raise LorikitError(f"--workers: worker {k} failed (exit {codes[k]}); its log: {folder / f'worker-{k}.log'}; "
                           f"finished stages are kept, run again to resume")
    # the table is hashed from settings, not from its parents' outputs: a fresh study rewrites it
    run_recipe(full, resume=not fresh, overwrite=fresh, only=[TABLE] if fresh or needed is not None else None,
               echo=echo, settled=settled)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the worker's log file is its progress
    sys.exit(run_worker(sys.argv[1]))
