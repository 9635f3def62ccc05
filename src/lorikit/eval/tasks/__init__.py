"""Evaluation tasks, one file each, registered by name (see ``base.TaskSpec``).

Importing this package imports every module in it, so a new task is one new file that ends in
``register(TaskSpec(...))``; ``lorikit eval --task`` choices, the eval config's validation and
docs/eval.md's table follow the registry.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import CHOICE, GENERATE_ONLY, TASKS, Item, TaskSpec, load_items, register, score_answers
from .humaneval import humaneval_rows, score_humaneval
from .safety import score_safety

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["CHOICE", "GENERATE_ONLY", "TASKS", "Item", "TaskSpec", "humaneval_rows", "load_items", "register",
           "score_answers", "score_humaneval", "score_safety"]
