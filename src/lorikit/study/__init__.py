"""The study protocol: tasks × methods × seeds × merge weights, trained to convergence, with
intervals (``lorikit study``; docs/study.md)."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import UsageError
from ..pipeline.recipe import parse_recipe
from ..pipeline.runner import run_recipe
from ..utils.yamlfile import load_yaml
from .checks import check_task_rows
from .config import METHODS, StudyConfig, StudyTask
from .recipe import study_recipe

logger = logging.getLogger(__name__)


def load_study_config(path: str | None, **overrides: Any) -> StudyConfig:
    """A ``StudyConfig`` from a YAML file of its fields (unknown keys refused), flags on top."""
    values: dict[str, Any] = {}
    if path:
        values = load_yaml(path) or {}
        if not isinstance(values, dict):
            raise UsageError(f"{path}: expected a mapping of study settings")
        known = {f.name for f in fields(StudyConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{path}: unknown study setting {unknown[0]!r} (allowed: {', '.join(sorted(known))})")
    values.update(overrides)
    try:
        return StudyConfig(**values)
    except UsageError as exc:
        raise UsageError(f"{path or 'study'}: {exc}") from None
    except TypeError as exc:
        raise UsageError(f"{path or 'study'}: {exc}") from None


def run_study(cfg: StudyConfig, fresh: bool = False, source: str = "lorikit study",
              echo: Callable[[str], None] | None = None) -> Path:
    """Run (or resume) the study (``echo``: progress lines, default the log); returns its table folder
    (table.md, study.json, PNGs)."""
    check_task_rows(cfg.task_specs, cfg.eval_examples)
    recipe = parse_recipe(study_recipe(cfg), source=source, workdir=cfg.workdir)
    logger.info("study: %d stages in %s", len(recipe.stages), cfg.workdir)
    needed, settled = None, frozenset()
    if cfg.resume_from:  # what the committed outcomes hold is not run again (study/resume.py)
        from .resume import TABLE, needed_stages, settled_results, settled_stages

        archived = settled_results(cfg, recipe)
        needed = needed_stages(recipe, archived)
        settled = settled_stages(recipe, archived, needed)
        (echo or logger.info)(f"lorikit study: {len(settled)} results taken from {cfg.resume_from}; "
                              f"{len(needed)} stages to run or resume here, then the table")
    if cfg.workers > 1:
        from .workers import run_parallel

        run_parallel(cfg, recipe, fresh, echo or logger.info, needed=needed, settled=settled)
    else:
        run_recipe(recipe, resume=not fresh, overwrite=fresh, only=None if needed is None else [*needed, TABLE],
                   settled=settled, **({"echo": echo} if echo else {}))
    return Path(cfg.workdir) / "table"


def recipe_yaml(cfg: StudyConfig) -> str:
    return yaml.safe_dump(study_recipe(cfg), sort_keys=False, width=120)


__all__ = ["METHODS", "StudyConfig", "StudyTask", "load_study_config", "recipe_yaml", "run_study", "study_recipe"]
