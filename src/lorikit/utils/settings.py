"""Schema validation of settings given as data (recipes, ``train --config`` files, ``--set``).

Each dataclass field's type hint is checked with pydantic in lax mode, so what YAML 1.1 reads as
a string (``1e-3``, ``"5"``) becomes the number the field asks for, while a value that is not one
is an error naming the key. Unknown keys get a 'did you mean' from the known ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import UsageError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

_ADAPTERS: dict[Any, TypeAdapter] = {}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _numeric(hint: Any) -> bool:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return any(a in (int, float) for a in args)


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce_value(key: str, value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (lax: numeric strings become numbers); UsageError naming ``key``."""
    if isinstance(value, bool) and _numeric(hint) and bool not in typing.get_args(hint):
        raise UsageError(f"{where}: setting {key!r} = {value!r} is not {_describe(hint)}")
    from pydantic import TypeAdapter, ValidationError  # a setting given as data needs it; --help does not

    adapter = _ADAPTERS.get(hint)
    if adapter is None:
        adapter = _ADAPTERS[hint] = TypeAdapter(hint)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise UsageError(f"{where}: setting {key!r} = {value!r} is not {_describe(hint)} ({msg})") from None


def coerce_settings(cls: type, settings: dict[str, Any], where: str, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Settings for dataclass ``cls``, each checked against its field's type; unknown keys refused."""
    hints = typing.get_type_hints(cls)
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(cls)}
    fields = {f.name for f in dataclasses.fields(cls)} - set(skip)
    out = {}
    for key, value in settings.items():
        if key not in fields:
            raise UsageError(f"{where}: unknown setting {key!r}{did_you_mean(key, fields)} "
                             f"(allowed: {', '.join(sorted(fields))})")
        out[key] = coerce_value(key, value, hints[key], where)
        allowed = choices[key]
        if allowed and out[key] is not None and out[key] not in allowed:
            raise UsageError(f"{where}: setting {key!r} = {out[key]!r}: unknown"
                             f"{did_you_mean(str(out[key]), [str(c) for c in allowed])} "
                             f"(choose from {', '.join(map(str, allowed))})")
    return out
