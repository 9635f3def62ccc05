"""Where a study stands (``lorikit study STUDY.yaml --status``): stages finished by kind, how the
finished trainings stopped (the plateau share the table will report), the trainings under way (their
newest resume state), and the time left at the stage costs measured so far in this workdir.

Costs are estimated per stage kind and data set (a safety training costs ten built-in ones), from
``seconds`` in each finished stage's record — or in the record of a stage that ran here before its
inputs changed (a table after a newer ``--resume-from`` file) — and, with ``--resume-from``, the wall
times its file records; a (kind, data) pair with nothing finished yet borrows
the mean of its kind. Nothing is run or written.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..pipeline.recipe import parse_recipe
from ..pipeline.runner import plan_recipe, read_record
from .config import StudyConfig
from .recipe import study_recipe


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cost_key(recipe, name: str) -> tuple[str, str]:
    data = recipe.resolve(name).get("data")
    return recipe.stages[name].kind, data if isinstance(data, str) else ""


def _from_archive(cfg: StudyConfig, recipe, done_here: set[str]) -> tuple[set[str], dict[tuple[str, str], list[float]], dict]:
    """With ``--resume-from``: the stages its file settles (or that only settled ones needed), the wall
    times it recorded (``stage_seconds``) of stages not done here, per (kind, data) — a resumed study's time
    left is estimated before anything has finished on this machine — and its trainings' early-stopping records."""
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    if not cfg.resume_from:
        return set(), seconds, {}
    from ..analysis.study.outcomes import load
    from .resume import TABLE, needed_stages, settled_results

    skip = set(recipe.stages) - set(needed_stages(recipe, settled_results(cfg, recipe))) - {TABLE}
    archive = load(cfg.resume_from).data
    for name, (_, value) in (archive.get("stage_seconds") or {}).items():
        if name in recipe.stages and name not in done_here and value is not None:
            seconds[_cost_key(recipe, name)].append(float(value))
    return skip, seconds, archive.get("trainings") or {}


def _count_stop(early_stopping: dict, stopped: Counter, steps: list[int]) -> None:
    stopped[early_stopping.get("stopped", "no dev evaluation")] += 1
    if "steps_run" in early_stopping:
        steps.append(int(early_stopping["steps_run"]))


def study_status(cfg: StudyConfig) -> dict[str, Any]:
    from ..train.checkpoint import resume_step  # imports torch: not at the CLI's start

    recipe = parse_recipe(study_recipe(cfg), source="lorikit study --status", workdir=cfg.workdir)
    plans = plan_recipe(recipe, resume=True)
    skip, seconds, archived = _from_archive(cfg, recipe, {p.name for p in plans if p.status == "done"})
    kinds: dict[str, Counter] = defaultdict(Counter)
    stopped, steps, under_way, left = Counter(), [], [], []
    for plan in plans:
        if plan.status != "done" and plan.name in skip:
            kinds[plan.kind]["settled"] += 1
            if plan.kind == "train":  # the share stopped by plateau is the whole study's, settled runs too
                _count_stop(archived.get(plan.name) or {}, stopped, steps)
            continue
        done = plan.status == "done"
        kinds[plan.kind]["done" if done else "left"] += 1
        if not done:
            left.append(plan.name)
            stale = read_record(plan.out) if plan.status == "stale" else None
            if stale and "seconds" in stale:  # it ran here once (its inputs changed since): a measured cost
                seconds[_cost_key(recipe, plan.name)].append(float(stale["seconds"]))
            if plan.kind == "train" and (step := resume_step(plan.out)) is not None:
                under_way.append({"stage": plan.name, "step": step, "cap": recipe.resolve(plan.name).get("max_steps")})
            continue
        record = read_record(plan.out) or {}
        if "seconds" in record:
            seconds[_cost_key(recipe, plan.name)].append(float(record["seconds"]))
        if plan.kind == "train":
            _count_stop((_read(plan.out / "lorikit.json") or {}).get("early_stopping") or {}, stopped, steps)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for (kind, _), values in seconds.items():
        by_kind[kind].extend(values)
    estimate, unknown = 0.0, Counter()
    for name in left:
        key = _cost_key(recipe, name)
        known = seconds.get(key) or by_kind.get(key[0])
        if known:
            estimate += statistics.mean(known)
        else:
            unknown[key[0]] += 1
    from .workers import TABLE, shared_stages, stages_by_seed  # a seed is whole when every stage of its own is done

    status_of = {p.name: "done" if p.name in skip else p.status for p in plans}
    by_seed = stages_by_seed(cfg)
    shared = shared_stages(by_seed)
    # the table's comparisons wait for a seed's merges of every method, not for its continual arm
    continual = (set(recipe.stages) - set(study_recipe(replace(cfg, continual=None))["stages"])
                 if cfg.continual else set())

    def whole(skipped: set[str]) -> list[int]:
        return [s for s, names in by_seed.items()
                if all(status_of.get(n) == "done" for n in names - shared - {TABLE} - skipped)]

    return {"workdir": cfg.workdir, "stages": len(plans), "resume_from": cfg.resume_from,
            "seeds_whole": whole(set()), "seeds_merges_whole": whole(continual), "seeds": list(cfg.seeds),
            "kinds": {k: dict(v) for k, v in sorted(kinds.items())},
            "trainings_stopped": dict(stopped), "steps_run": steps, "under_way": under_way,
            "seconds_left": estimate, "not_estimated": dict(unknown), "workers": cfg.workers,
            "costs": {f"{k} {d}".strip(): (len(v), statistics.mean(v)) for (k, d), v in sorted(seconds.items())}}


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def format_status(status: dict[str, Any]) -> str:
    kinds = status["kinds"]
    done = sum(c.get("done", 0) + c.get("settled", 0) for c in kinds.values())
    settled = sum(c.get("settled", 0) for c in kinds.values())
    lines = [f"{status['workdir']}: {done} of {status['stages']} stages done ("
             + ", ".join(f"{k} {c.get('done', 0) + c.get('settled', 0)}/{sum(c.values())}" for k, c in kinds.items())
             + ")" + (f"; {settled} of them settled by {status['resume_from']} (not run here)" if settled else "")]
    seeds = lambda key: f"{', '.join(map(str, status[key])) or 'none'} of {len(status['seeds'])}"  # noqa: E731
    if status.get("seeds_merges_whole", status["seeds_whole"]) != status["seeds_whole"]:
        lines.append(f"seeds finished for every method: {seeds('seeds_merges_whole')}; "
                     f"with the continual arm: {seeds('seeds_whole')}")
    else:
        lines.append(f"seeds finished for every method: {seeds('seeds_whole')}")
    stops, steps = status["trainings_stopped"], status["steps_run"]
    if stops:
        n = sum(stops.values())
        lines.append(f"trainings finished: {n}; " + ", ".join(f"{why} {c} ({c / n:.0%})" for why, c in sorted(stops.items()))
                     + (f"; steps run median {statistics.median(steps):g} ({min(steps)}-{max(steps)})" if steps else ""))
    for run in status["under_way"]:
        lines.append(f"under way: {run['stage']}: resume state at step {run['step']} (cap {run['cap']})")
    for key, (n, mean) in status["costs"].items():
        lines.append(f"  measured: {key}: {_duration(mean)} per stage (n {n})")
    left, workers = status["seconds_left"], status["workers"]
    missing = status["not_estimated"]
    if not status["costs"]:
        lines.append("time left: not estimated (no stage has finished yet, so no cost is measured)")
        return "\n".join(lines)
    unmeasured = f"nothing of their kind finished yet: {', '.join(f'{c} {k}' for k, c in missing.items())}"
    if not left and missing:  # what is left is all of kinds with no measured cost: "0 s" would read as done
        lines.append(f"time left: not estimated ({unmeasured})")
        return "\n".join(lines)
    lines.append(f"time left at the measured costs: {_duration(left)} of stage time"
                 + (f", about {_duration(left / workers)} with {workers} workers" if workers > 1 else "")
                 + (f" (not counted, {unmeasured})" if missing else ""))
    return "\n".join(lines)
