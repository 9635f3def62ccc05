"""``--task builtin``: a built-in data set (``--data builtin:NAME[:SPLIT]``) scored by its own task.

``lorikit.data.builtin.TASKS`` names each built-in task's scorer: arithmetic → gsm8k; reverse,
pair-add, pair-sub, pair-max, words-reverse, words-sort → exact; compare, pair-greater → nlu.
"""

from __future__ import annotations

from ...data.builtin import TASKS as BUILTIN
from ...data.builtin import parse_builtin
from ...data.loading import source_of
from ...errors import UsageError
from .base import CHOICE, TaskSpec, register


def resolve(cfg) -> str:
    """The scoring task of ``builtin:NAME[:SPLIT]`` data."""
    data = cfg.data
    if not data or not data.startswith("builtin:"):
        raise UsageError(f"--task builtin needs --data builtin:NAME[:SPLIT] (NAME: {', '.join(BUILTIN)}), got {data!r}")
    return BUILTIN[parse_builtin(source_of(data))[0]].scorer


SPEC = register(TaskSpec("builtin", "the built-in data set's own scorer", scorings=CHOICE, resolve=resolve))
