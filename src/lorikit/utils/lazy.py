"""Packages whose public names load on first use (PEP 562), so ``import lorikit`` and the command
line's ``--help`` do not pay for torch, transformers and PEFT until something needs them."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable


class LazyPackage(types.ModuleType):
    """A package module whose exports may share a name with a submodule (``lorikit.train`` the
    function, ``lorikit/train/`` the package): importing the submodule binds it on the package,
    which would hide the export; the export keeps the name, as an eager ``from .x import name`` did."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_table", ())
                and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)


def lazy_exports(namespace: dict[str, Any], table: dict[str, str]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is ``namespace``:
    ``table`` maps each public name to the submodule (relative, ``"adapters.build"``) defining it.
    A name is imported on first access and then kept in the package like an eager import."""
    package = namespace["__name__"]
    namespace["_lazy_table"] = table
    sys.modules[package].__class__ = LazyPackage

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
