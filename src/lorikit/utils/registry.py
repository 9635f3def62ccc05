"""One registry type for every "name → thing" table of lorikit (adapter methods, initialisations
of A, training heads, evaluation tasks, ...).

A ``Registry`` is an ordered dict (registration order is the order of ``--help`` choices) that
refuses an empty or repeated name and looks names up with the one-line error every command uses::

    METHODS = Registry("adapter method")
    METHODS.add(lora.METHOD.name, lora.METHOD)
    METHODS.lookup("dora", "--method")   # UsageError: --method 'dora': unknown (choose from lora, ...)
"""

from __future__ import annotations

from typing import TypeVar

from ..errors import UsageError

T = TypeVar("T")


class Registry(dict):
    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name`` (new and non-empty: a programming error otherwise)."""
        if not name or name in self:
            raise ValueError(f"{self.what} name {name!r} is empty or already registered")
        self[name] = item
        return item

    def lookup(self, name: str, flag: str) -> T:
        """The entry ``name``; a one-line UsageError naming ``flag`` and the choices otherwise."""
        if name not in self:
            raise UsageError(f"{flag} {name!r}: unknown (choose from {', '.join(self)})")
        return self[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self)
