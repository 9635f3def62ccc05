"""Registry of adapter methods: each method is one file here with an ``AdapterMethod`` (``METHOD``).

Adding a method (a DoRA-like variant, say) = one file defining a subclass of
``base.AdapterMethod`` and one line in ``_BUILTIN`` below, plus its test and a section in
docs/methods.md. Everything else — ``--method`` choices and help, validation of ``--mask`` /
``--from``, the training plan, ``lorikit params``, packing — asks the registry.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..inits import seeded_init_names
from . import lora, lori_d, lori_s
from .base import AdapterMethod
from ...utils.lazy import lazy_exports
from ...utils.registry import Registry

_BUILTIN = (lora.METHOD, lori_d.METHOD, lori_s.METHOD)
# the training plans need torch: loaded on first use, so listing the methods (--help) stays light
__getattr__, __dir__ = lazy_exports(globals(), {"DensePlan": "plans", "SparsePlan": "plans"})
METHODS: Registry = Registry("adapter method")
for _method in _BUILTIN:
    METHODS.add(_method.name, _method)


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def method_help() -> str:
    """``--method`` help: every method with its summary."""
    return ", ".join(f"{m.name} ({m.summary})" for m in METHODS.values())


def get_method(name: str, flag: str = "--method") -> AdapterMethod:
    """The registered method ``name``; a one-line UsageError naming ``flag`` otherwise."""
    return METHODS.lookup(name, flag)


def find_method(name: str | None) -> AdapterMethod | None:
    """The method an adapter's ``lorikit.json`` names, or None (merged, foreign or unknown)."""
    return METHODS.get(name) if isinstance(name, str) else None


def continual_method(with_mask: bool) -> AdapterMethod:
    """The method that trains on from an existing adapter: its masked entries, or all of B."""
    for method in METHODS.values():
        if method.continues and method.uses_mask == with_mask:
            return method
    raise UsageError("--from: no registered method continues an adapter" + (" with --mask" if with_mask else ""))


def plain_method() -> AdapterMethod:
    """The method that trains A and B with nothing frozen, masked or seeded (LoRA): the papers' control."""
    for method in METHODS.values():
        if not (method.freezes_a or method.uses_mask or method.seeded_a):
            return method
    raise UsageError("no registered method trains A and B unconstrained")


def mask_method_names() -> str:
    return " / ".join(m.name for m in METHODS.values() if m.uses_mask)


def regenerable_a(meta: dict[str, Any] | None) -> tuple[int, str] | None:
    """(seed, a_init) that regenerate an adapter's A from its ``lorikit.json``, or None."""
    meta = meta or {}
    method = find_method(meta.get("method"))
    a_init = meta.get("a_init", "kaiming")
    if method is None or not method.seeded_a or meta.get("seed") is None or a_init not in seeded_init_names():
        return None
    return int(meta["seed"]), a_init


__all__ = ["METHODS", "AdapterMethod", "DensePlan", "SparsePlan", "continual_method", "find_method", "get_method",
           "mask_method_names", "method_help", "method_names", "regenerable_a"]
