"""The interface of a stage kind, and a checked dataclass builder for kinds' settings."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from ...errors import UsageError


class StageKind:
    """One kind of stage. ``validate`` runs for every stage before anything runs; ``run`` writes
    the output folder ``out`` atomically (replacing an older one); ``complete`` says whether a
    folder found on disk is a finished output of this kind."""

    name: str = ""
    version: int = 1  # bump when the same settings would produce a different output
    summary: str = ""

    def validate(self, stage: str, settings: dict[str, Any], out: Path) -> Any:
        """Check resolved settings; return whatever ``run`` needs. Raise UsageError naming the stage."""
        raise NotImplementedError

    def run(self, prepared: Any, out: Path) -> None:
        raise NotImplementedError

    def complete(self, out: Path) -> bool:
        raise NotImplementedError


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def build_dataclass(cls: type, settings: dict[str, Any], where: str, **fixed: Any):
    """``cls(**settings, **fixed)`` with unknown keys and wrong types reported against ``where``."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in settings.items():
        if key not in fields or key in fixed:
            allowed = ", ".join(sorted(fields - set(fixed)))
            raise UsageError(f"{where}: unknown setting {key!r} (allowed: {allowed})")
        if not _type_ok(value, hints[key]):
            raise UsageError(f"{where}: setting {key!r} = {value!r} is not {_describe(hints[key])}")
    try:
        return cls(**settings, **fixed)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from exc


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
