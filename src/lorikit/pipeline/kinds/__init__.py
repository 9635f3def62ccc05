"""Stage kinds a recipe can use: one small module each, exposing ``KIND`` (a ``StageKind``).

To add a kind (masks, merge, eval, ...), write ``kinds/<name>.py`` with a ``StageKind`` subclass
and add the module name to ``KIND_MODULES``. A recipe naming a kind not listed here fails
validation before any stage runs.
"""

from __future__ import annotations

import importlib

from ...errors import UsageError
from ...utils.registry import Registry
from .base import StageKind

KIND_MODULES = ["train", "masks", "merge", "merge_search", "eval", "scores", "analyze", "osrm_stats", "study_table"]

KINDS: Registry[StageKind] = Registry("stage kind")


def registered_kinds() -> Registry[StageKind]:
    """Every kind of ``KIND_MODULES``, by name (each module imported once, on first use)."""
    for module in KIND_MODULES[len(KINDS):]:
        kind = importlib.import_module(f"{__name__}.{module}").KIND
        KINDS.add(kind.name, kind)
    return KINDS


def get_kind(name: str, stage: str, source: str = "<recipe>") -> StageKind:
    kind = registered_kinds().find(name)
    if kind is None:  # the recipe and stage are named too, so not Registry.lookup's flag message
        raise UsageError(f"{source}: stage {stage!r}: unknown kind {name!r} "
                         f"(registered kinds: {', '.join(sorted(KINDS))})")
    return kind


__all__ = ["KINDS", "KIND_MODULES", "StageKind", "get_kind", "registered_kinds"]
