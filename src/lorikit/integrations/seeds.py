"""Per-task seeds for LoRI's frozen A.

LoRI's merge relies on each task's A being a different random projection (near-orthogonal row
spaces). A library default such as ``seed=0`` would give every task built through the Python API
the identical A, so lorikit never picks one silently: a seed is either given or derived here from
something that identifies the task — its name or its training data.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from ..errors import UsageError

SEED_RANGE = 2**31 - 1


def _to_seed(digest: bytes) -> int:
    return int.from_bytes(digest[:4], "little") % SEED_RANGE


def task_seed(task: str) -> int:
    """A seed from a task name: ``sha256("task:" + name)``; different names give different A."""
    if not isinstance(task, str) or not task.strip():
        raise UsageError("task: give a non-empty task name to derive the seed from")
    return _to_seed(hashlib.sha256(f"task:{task}".encode()).digest())


def data_fingerprint_seed(data: str | os.PathLike | Iterable[str]) -> int:
    """A seed from training data: a file's bytes, or the concatenated texts of an iterable of rows.

    The same data gives the same seed on any machine (and the CLI's ``--data FILE`` default seed
    for a file is the same function of its content)."""
    digest = hashlib.sha256()
    if isinstance(data, (str, os.PathLike)) and Path(data).is_file():
        with Path(data).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return _to_seed(digest.digest())
    if isinstance(data, (str, bytes)):
        raise UsageError(f"data {str(data)!r}: not a file; pass a file path or an iterable of texts")
    count = 0
    for row in data:
        digest.update(str(row).encode())
        digest.update(b"\x00")
        count += 1
    if not count:
        raise UsageError("data: empty, cannot derive a seed from it")
    return _to_seed(digest.digest())


def resolve_seed(seed: int | None, task: str | None, what: str = "get_lori_model") -> int:
    """``seed`` if given, else the seed of ``task``; neither is an error (never a shared default)."""
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"{what}: seed={seed!r} must be a non-negative integer")
        return seed
    if task is not None:
        return task_seed(task)
    raise UsageError(f"{what}: give seed=INT or task=NAME (LoRI's A must differ between tasks, so there is "
                     "no shared default; lorikit.integrations.data_fingerprint_seed(FILE) derives one from data)")
