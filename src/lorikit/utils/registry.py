"""One registry type for every "name → thing" table of lorikit (adapter methods, initialisations
of A, training heads, evaluation tasks, merge methods, recipe stage kinds).

A ``Registry`` is an ordered dict (registration order is the order of ``--help`` choices, unless
the owner sorts it) that refuses an empty or repeated name, knows each entry's other spellings
(``aliases``, compared after ``normalize``) and looks names up with the one-line error every
command uses::

    METHODS = Registry("adapter method")
    METHODS.add(lora.METHOD.name, lora.METHOD)
    METHODS.lookup("dora", "--method")   # UsageError: --method 'dora': unknown (choose from lora, ...)
    METHODS.find("dora")                 # None: for callers whose message names more than a flag
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from ..errors import UsageError
from .settings import did_you_mean

T = TypeVar("T")


def reference(entry: Any) -> str:
    """``Title: paper`` of a registered entry that names its paper (adapter methods, inits, merge
    methods: ``title``, ``paper``), its title alone when it has none; docs tables and model cards."""
    return f"{entry.title}: {entry.paper}" if entry.paper else entry.title


class Registry(dict, Generic[T]):
    def __init__(self, what: str, unknown: str = "unknown", normalize: Callable[[Any], str] | None = None):
        """``what`` names the entries in programming errors; ``unknown`` is the word of the
        unknown-name error (``unknown merge method``); ``normalize`` maps a spelling to the form
        names and aliases are compared in (e.g. ``_`` → ``-``)."""
        super().__init__()
        self.what, self.unknown, self.normalize = what, unknown, normalize
        self.aliases: dict[str, str] = {}  # normalized alias → registered name

    def _key(self, name: Any) -> Any:
        return self.normalize(name) if self.normalize is not None else name

    def add(self, name: str, item: T, aliases: tuple[str, ...] = ()) -> T:
        """Register ``item`` under ``name`` and its ``aliases`` (new and non-empty: a programming error otherwise)."""
        if not name or name in self or name in self.aliases:
            raise ValueError(f"{self.what} name {name!r} is empty or already registered")
        for alias in map(self._key, aliases):
            if alias != name and (alias in self or self.aliases.get(alias, name) != name):
                raise ValueError(f"{self.what} {name}: alias {alias!r} is already another entry's")
        self[name] = item
        self.aliases.update({a: name for a in map(self._key, aliases) if a != name})
        return item

    def canonical(self, name: Any) -> str | None:
        """The registered name ``name`` spells (itself or an alias), or None."""
        try:
            key = self._key(name)
            key = self.aliases.get(key, key)
        except TypeError:  # unhashable: no entry's name
            return None
        return key if key in self else None

    def find(self, name: Any) -> T | None:
        """The entry ``name`` (or an alias of it) names, or None."""
        found = self.canonical(name)
        return None if found is None else self[found]

    def lookup(self, name: Any, flag: str) -> T:
        """The entry ``name`` names; a one-line UsageError naming ``flag`` and the choices otherwise."""
        found = self.find(name)
        if found is None:
            raise UsageError(f"{flag} {name!r}: {self.unknown}{self.did_you_mean(name)} (choose from {', '.join(self)})")
        return found

    def did_you_mean(self, name: Any) -> str:
        """`` (did you mean 'x'?)`` for the entry or alias closest to ``name``, or an empty string."""
        try:
            key = self._key(name)
        except (TypeError, AttributeError):
            return ""
        return did_you_mean(str(key), [*self, *self.aliases])

    def names(self) -> tuple[str, ...]:
        return tuple(self)

    def sort(self, key: Callable[[str], Any]) -> None:
        """Reorder the entries by ``key(name)`` (the order ``--help`` and the docs list them in)."""
        items = sorted(self.items(), key=lambda item: key(item[0]))
        self.clear()
        self.update(items)
