"""Run a recipe: validate every stage, then run stages in dependency order, skipping finished ones.

Each stage has a hash:

    hash(stage) = sha256(canonical JSON of {kind, kind version, settings with $NAME references
                          kept symbolic, {parent: hash(parent)}[, resolved]})

where ``resolved`` holds what the settings leave to the machine and that changes the output (the
dtype ``--dtype auto`` picks, when it is not float32);

so a change to a stage's settings, or to any ancestor's, changes its hash (moving the workdir
does not). After a stage's output folder is in place the runner writes ``lorikit-stage.json``
into it (atomically) with the hash, the resolved settings and a fingerprint of every output file
(size + SHA-256). A stage is **done** when that record exists, its hash matches, the kind
recognises the folder as a complete output and no recorded file was changed, truncated or removed
since; otherwise it is missing (no folder) or stale (other settings, unfinished, or changed).

- default: run everything; refuse if any stage's output folder already exists;
- ``resume``: skip done stages, run missing and stale ones (and everything downstream of a rerun);
- ``overwrite``: run everything, replacing existing outputs;
- ``only``: run just these stages; their parents must be done, or ``settled``: held elsewhere (a study's
  committed outcomes, ``lorikit study --resume-from``), so never run here;
- ``dry_run``: validate and print the plan, run nothing.
"""

from __future__ import annotations

import logging
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import LorikitError, UsageError
from ..utils.atomic import MARKER, atomic_write_json
from .kinds import StageKind, get_kind
from .recipe import Recipe

STAGE_RECORD = "lorikit-stage.json"
FULL_HASH_LIMIT = 64 * 2**20  # bytes: larger outputs (--into-model shards) are fingerprinted by size and mtime

log = logging.getLogger(__name__)


@dataclass
class StagePlan:
    name: str
    kind: str
    out: Path
    hash: str
    status: str  # done | stale | missing
    reason: str  # why stale
    action: str = "run"  # run | skip
    prepared: Any = None
    resolved: dict[str, Any] | None = None  # what validation decided on this machine (hashed; see StageKind.resolved)

    def describe(self) -> str:
        skip = "skip (up to date)" if self.status == "done" else f"skip (not selected; {self.status})"
        what = {"skip": skip, "run": {"missing": "run", "stale": f"redo ({self.reason})",
                                      "done": "redo (forced)"}[self.status]}[self.action]
        return f"{self.name} ({self.kind}): {what} -> {self.out}"


def stage_hash(kind: StageKind, settings: dict[str, Any], parent_hashes: dict[str, str],
               resolved: dict[str, Any] | None = None) -> str:
    payload = {"kind": kind.name, "version": kind.version, "settings": settings, "parents": parent_hashes}
    if resolved:  # absent when empty: the hashes of stages that resolve nothing are unchanged
        payload["resolved"] = resolved
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_record(out: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((out / STAGE_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _status(kind: StageKind, out: Path, digest: str) -> tuple[str, str]:
    if not out.exists():
        return "missing", ""
    record = read_record(out)
    if record is None:
        return "stale", "no stage record: unfinished or not written by this recipe"
    if record.get("hash") != digest:
        return "stale", "settings or a parent changed"
    if not kind.complete(out):
        return "stale", "output incomplete"
    changed = changed_output(out, record.get("outputs"))
    if changed:
        return "stale", f"{changed} changed since the stage wrote it"
    return "done", ""


def fingerprint(out: Path) -> dict[str, list]:
    """{file: [size, sha256]} of every file a stage wrote (size and mtime for files over 64 MiB)."""
    prints: dict[str, list] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel in (STAGE_RECORD, MARKER):
            continue
        stat = path.stat()
        if stat.st_size > FULL_HASH_LIMIT:
            prints[rel] = [stat.st_size, f"mtime:{stat.st_mtime_ns}"]
        else:
            prints[rel] = [stat.st_size, hashlib.sha256(path.read_bytes()).hexdigest()]
    return prints


def changed_output(out: Path, recorded: dict[str, list] | None) -> str | None:
    """The first recorded output file that is gone, truncated or changed (None: all as written)."""
    if not isinstance(recorded, dict):
        return None  # a record written before fingerprints existed
    current = fingerprint(out)
    return next((rel for rel, value in recorded.items() if current.get(rel) != list(value)), None)


def plan_recipe(recipe: Recipe, resume: bool = False, overwrite: bool = False,
                only: list[str] | None = None, settled: set[str] | frozenset[str] = frozenset()) -> list[StagePlan]:
    """Validate every stage (kind registered, settings well formed) and decide what runs."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite: choose one")
    order = recipe.order()
    for name in only or []:
        if name not in recipe.stages:
            raise UsageError(f"--only {name}: no such stage in {recipe.source} (stages: {', '.join(order)})")
    plans: dict[str, StagePlan] = {}
    for name in order:
        stage = recipe.stages[name]
        kind = get_kind(stage.kind, name, recipe.source)
        out = recipe.out(name)
        settings = recipe.resolve(name)
        prepared = kind.validate(name, settings, out)
        resolved = kind.resolved(settings, prepared)
        digest = stage_hash(kind, stage.settings, {p: plans[p].hash for p in stage.parents}, resolved)
        status, reason = _status(kind, out, digest)
        plans[name] = StagePlan(name, stage.kind, out, digest, status, reason, prepared=prepared, resolved=resolved)
    selected = list(only) if only else order
    rerun: set[str] = set()
    for name in order:
        plan = plans[name]
        parents = recipe.stages[name].parents
        if name not in selected:
            plan.action = "skip"
            continue
        if only:
            missing = [p for p in parents if p not in selected and plans[p].status != "done" and p not in settled]
            if missing:
                raise UsageError(f"--only {name}: needs stage {missing[0]!r}, which is {plans[missing[0]].status} "
                                 f"(run it first, or add --only {missing[0]})")
        if resume:
            upstream_rerun = any(p in rerun for p in parents)
            plan.action = "run" if plan.status != "done" or upstream_rerun else "skip"
            if plan.action == "run" and plan.status == "done":
                plan.status, plan.reason = "stale", "a parent is being redone"
        else:
            plan.action = "run"
            if plan.status != "missing" and not overwrite:
                raise UsageError(f"stage {name!r}: output {plan.out} exists (pass --resume to keep finished "
                                 f"stages, or --overwrite to redo them)")
        if plan.action == "run":
            rerun.add(name)
    return [plans[n] for n in order]


def run_recipe(recipe: Recipe, resume: bool = False, overwrite: bool = False, only: list[str] | None = None,
               dry_run: bool = False, echo: Callable[[str], None] = log.info,
               settled: set[str] | frozenset[str] = frozenset()) -> list[StagePlan]:
    """Run the recipe; returns the plan (each stage's action) for callers and tests."""
    plans = plan_recipe(recipe, resume, overwrite, only, settled)
    todo = [p for p in plans if p.action == "run"]
    prefix = "plan" if dry_run else "lorikit run"
    echo(f"{prefix}: {recipe.source}: {len(plans)} stages, {len(todo)} to run, workdir {recipe.workdir}")
    for i, plan in enumerate(plans, 1):
        echo(f"  [{i}/{len(plans)}] {plan.describe()}")
    if dry_run:
        return plans
    from ..models.loading import keep_base_loaded  # here: planning a recipe does not import torch

    with keep_base_loaded():  # the stages' base model is read once, then copied (models/kept.py)
        _run_stages(recipe, plans, todo, echo)
    return plans


def _run_stages(recipe: Recipe, plans: list[StagePlan], todo: list[StagePlan], echo: Callable[[str], None]) -> None:
    by_name, ran = {p.name: p for p in plans}, set()
    for i, plan in enumerate(todo, 1):
        if plan.name in ran:  # trained together with an earlier stage
            continue
        kind = get_kind(plan.kind, plan.name, recipe.source)
        pending = [q for q in todo[i:] if q.name not in ran]
        group = _together(recipe, kind, plan, pending, by_name)
        ran.update(p.name for p in group)
        echo(f"lorikit run: [{i}/{len(todo)}] {plan.name} ({plan.kind})"
             + (f" with {', '.join(p.name for p in group[1:])}" if len(group) > 1 else "") + " ...")
        t0 = time.perf_counter()
        try:
            if len(group) > 1:
                kind.run_together([p.prepared for p in group], [p.out for p in group])
            else:
                kind.run(plan.prepared, plan.out)
        except LorikitError as exc:
            raise type(exc)(f"stage {plan.name!r} ({plan.kind}): {exc}") from exc
        seconds = time.perf_counter() - t0
        for member in group:  # a joint run's wall time is shared out equally: stage times still add up
            _record(recipe, kind, member, by_name, seconds / len(group),
                    [p.name for p in group] if len(group) > 1 else None)
        echo(f"lorikit run: {', '.join(p.name for p in group)} done in {seconds:.1f} s")


def _together(recipe: Recipe, kind: StageKind, plan: StagePlan, later: list[StagePlan],
              by_name: dict[str, StagePlan]) -> list[StagePlan]:
    """``plan`` and the ``later`` stages not run yet of its kind that may run with it: the same together
    key (``StageKind.together_key``) and every parent done — not one this run has yet to (re)do."""
    key = kind.together_key(plan.prepared)
    if key is None:
        return [plan]
    waiting = {plan.name} | {q.name for q in later}
    return [plan] + [q for q in later if q.kind == plan.kind and kind.together_key(q.prepared) == key
                     and all(p not in waiting and by_name[p].status == "done" for p in recipe.stages[q.name].parents)]


def _record(recipe: Recipe, kind: StageKind, plan: StagePlan, by_name: dict[str, StagePlan], seconds: float,
            together: list[str] | None) -> None:
    if not kind.complete(plan.out):
        raise LorikitError(f"stage {plan.name!r} ({plan.kind}): finished but {plan.out} is not a complete output")
    atomic_write_json(plan.out / STAGE_RECORD, {
        "recipe": recipe.source, "stage": plan.name, "kind": plan.kind, "hash": plan.hash,
        "settings": recipe.resolve(plan.name), "resolved": plan.resolved,
        "parents": {p: by_name[p].hash for p in recipe.stages[plan.name].parents},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 2),
        **({"trained_together": together} if together else {}), "outputs": fingerprint(plan.out)})
    plan.status, plan.reason = "done", ""
