"""The one rule every command's output obeys: it never is, holds or lies inside one of its inputs.

Every command calls :func:`guard_output` with its ``--out`` (or ``--workdir``) and the files and
folders it reads, before any work. Paths are compared as resolved real paths (symlinks followed,
``./d.jsonl`` is ``d.jsonl``), and an existing output that is a hard link to an input counts as
that input. Only inputs that exist on disk take part: a model or data set named by Hub id or
``builtin:`` is not a path. This module imports nothing heavy (the CLI calls it before torch is
loaded).
"""

from __future__ import annotations

import os
from typing import Iterable

from ..errors import UsageError


def input_paths(values: Iterable) -> list[str]:
    """The existing paths among ``values``: strings, ``NAME=PATH`` pairs, ``PATH?query`` data
    specs, and lists, tuples or dict values of these (nested)."""
    found: list[str] = []
    stack = list(values)
    while stack:
        value = stack.pop(0)
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set)):
            stack.extend(value)
        elif isinstance(value, (str, os.PathLike)):
            text = os.fspath(value)
            candidates = [text, text.split("?", 1)[0]]
            if "=" in text:
                candidates.append(text.split("=", 1)[1])
            path = next((c for c in candidates if c and os.path.lexists(c)), None)
            if path is not None and path not in found:
                found.append(path)
    return found


def _inside(child: str, parent: str) -> bool:
    return os.path.commonpath([child, parent]) == parent and child != parent


def guard_output(out: str | os.PathLike | None, inputs: Iterable, flag: str = "--out") -> None:
    """Refuse ``out`` when it is, holds or lies inside one of ``inputs`` (see :func:`input_paths`)."""
    if not out:
        return
    target = os.path.realpath(out)
    for item in input_paths(inputs):
        real = os.path.realpath(item)
        if real == target or (os.path.exists(out) and os.path.exists(item) and os.path.samefile(out, item)):
            how = "is"
        elif _inside(real, target):
            how = "holds"
        elif _inside(target, real):
            how = "lies inside"
        else:
            continue
        raise UsageError(f"{flag} {os.fspath(out)}: {how} the input {os.fspath(item)}; write somewhere else "
                         f"(lorikit never replaces or writes into its inputs)")
