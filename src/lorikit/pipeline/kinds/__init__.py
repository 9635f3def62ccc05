"""Stage kinds a recipe can use: one small module each, exposing ``KIND`` (a ``StageKind``).

To add a kind (masks, merge, eval, ...), write ``kinds/<name>.py`` with a ``StageKind`` subclass
and add the module name to ``KIND_MODULES``. A recipe naming a kind not listed here fails
validation before any stage runs.
"""

from __future__ import annotations

import importlib

from ...errors import UsageError
from .base import StageKind

KIND_MODULES = ["train", "masks", "merge", "merge_search", "eval", "scores", "analyze", "osrm_stats", "study_table"]


def registered_kinds() -> dict[str, StageKind]:
    kinds: dict[str, StageKind] = {}
    for module in KIND_MODULES:
        kind = importlib.import_module(f"{__name__}.{module}").KIND
        kinds[kind.name] = kind
    return kinds


def get_kind(name: str, stage: str, source: str = "<recipe>") -> StageKind:
    kinds = registered_kinds()
    if name not in kinds:
        raise UsageError(f"{source}: stage {stage!r}: unknown kind {name!r} "
                         f"(registered kinds: {', '.join(sorted(kinds))})")
    return kinds[name]


__all__ = ["KIND_MODULES", "StageKind", "get_kind", "registered_kinds"]
