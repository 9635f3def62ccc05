"""Checks of a study's settings before its first stage runs."""

from __future__ import annotations

from typing import Any

from ..data.loading import load_rows
from ..errors import LorikitError, UsageError
from ..eval.tasks import load_items


def check_task_rows(tasks: dict[str, Any], limit: int | None = None) -> None:
    """Each task's test rows fit its eval task (``task: exact`` needs instruction/output rows, ...),
    checked before the first stage: a misfit would otherwise surface only when that eval runs,
    after every training. ``tasks``: name → StudyTask; built-in tasks make their own rows."""
    for name, task in tasks.items():
        if task.eval_task == "builtin" or task.test.startswith("builtin:"):
            continue
        rows, where = load_rows(task.test, split="test")
        try:
            load_items(task.eval_task, rows[:limit] if limit else rows, where)
        except LorikitError as exc:
            raise UsageError(f"task {name!r} (task: {task.eval_task}): {exc}") from None
