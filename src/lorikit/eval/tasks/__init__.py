"""Evaluation tasks, one file each, registered by name (see ``base.TaskSpec``).

Importing this package imports every module in it, so a new task is one new file that ends in
``register(TaskSpec(...))``; ``lorikit eval --task`` choices, the eval config's validation and
docs/eval.md's table follow the registry.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import CHOICE, GENERATE_ONLY, TASKS, Item, TaskSpec, load_items, register, score_answers
# the built-in tasks first, in the order users see them listed; then any other file of the package
_ORDER = ("gsm8k", "nlu", "exact", "safety", "humaneval", "classification", "builtin")
for _name in _ORDER + tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _ORDER + ("base",))):
    importlib.import_module(f"{__name__}.{_name}")

from .humaneval import humaneval_rows, score_humaneval  # noqa: E402
from .safety import score_safety  # noqa: E402

__all__ = ["CHOICE", "GENERATE_ONLY", "TASKS", "Item", "TaskSpec", "humaneval_rows", "load_items", "register",
           "score_answers", "score_humaneval", "score_safety"]
