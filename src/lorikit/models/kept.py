"""One base model kept in memory across the stages of a recipe run or a study worker.

``keep_base_loaded()`` opens the block; inside it ``models.loading.load_model`` asks ``kept_copy``
for a folder model on the CPU instead of reading it again.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Callable

import torch


class _KeptBase:
    """The last base model loaded from a folder on the CPU, kept while ``keep_base_loaded()`` is open.

    Why: a recipe or study worker runs many stages on one base model, and each stage loaded it again
    (~1-3 s for SmolLM2-135M: reading the folder, building the modules, converting the dtype) — as long
    as a study's log-likelihood evaluation itself. A copy in memory costs 0.3-1 s (the model ~0.3 s idle,
    ~0.6 s and the tokenizer 0.1-0.8 s with a study running). Every caller gets its
    own deep copy (model and tokenizer), so what one stage does to its model (adapters injected,
    weights merged, padding side changed) never reaches the next; loading does not draw from torch's
    random generator, so a stage's results do not depend on whether its base came from here.
    The key includes each file's size and mtime, so a folder rewritten between stages is read again;
    models over ``KEEP_MAX_BYTES`` of weights are not kept (a second copy of an 8B base costs more
    memory than its load costs time)."""

    def __init__(self):
        self.depth = 0
        self.key: tuple | None = None
        self.bundle: Any = None  # a models.loading.ModelBundle

    def clear(self) -> None:
        self.key = self.bundle = None


_KEPT = _KeptBase()


@contextlib.contextmanager
def keep_base_loaded():
    """Within this block, ``load_model`` of a folder model on the CPU returns a copy of the one it loaded
    last with the same settings instead of reading it again (one model kept; dropped on leaving)."""
    _KEPT.depth += 1
    try:
        yield
    finally:
        _KEPT.depth -= 1
        if not _KEPT.depth:
            _KEPT.clear()


KEEP_MAX_BYTES = 2 << 30  # a second copy of a larger model (an 8B base: 16 GB in bf16) costs more memory than its load


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in {id(t): t for t in model.state_dict().values()}.values())


def folder_key(path: str, *settings) -> tuple | None:
    folder = Path(path)
    if not folder.is_dir():  # a Hub id: not kept (its files live in the Hub cache)
        return None
    files = tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()))
    return (str(folder.resolve()), files, *settings)


def keeping() -> bool:
    return _KEPT.depth > 0


def kept_copy(key: tuple, load: Callable[[], Any]):
    """A deep copy of the kept bundle when ``key`` is the kept one's; else ``load()``, kept (a copy) for next time."""
    if key == _KEPT.key:
        return copy.deepcopy(_KEPT.bundle)
    _KEPT.clear()  # one model kept: the previous one's memory goes first
    bundle = load()
    if weight_bytes(bundle.model) <= KEEP_MAX_BYTES:
        _KEPT.bundle, _KEPT.key = copy.deepcopy(bundle), key
    return bundle
