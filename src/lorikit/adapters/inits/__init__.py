"""Registry of the initialisations of A: seeded ones here, data-driven ones register themselves.

``kaiming`` and ``gaussian`` (seeded: A = f(seed, module)) are listed below; a data-driven init
(OSRM, ``osrm/init.py``) lives with the code that computes its statistics, one floor up, and calls
``register_init`` when its module is imported (``lorikit.train`` imports it). Adding an init =
one file with an ``AdapterInit`` subclass, listed here (seeded) or registering itself.
"""

from __future__ import annotations

from ...errors import UsageError
from ...utils.registry import Registry
from . import gaussian, kaiming
from .base import AdapterInit

INITS: Registry = Registry("init")


def register_init(init: AdapterInit) -> AdapterInit:
    """Add ``init`` to the registry (its name must be new)."""
    return INITS.add(init.name, init)


def seeded_init_names() -> tuple[str, ...]:
    """Names valid for ``--a-init`` (A = f(seed, module))."""
    return tuple(n for n, i in INITS.items() if i.seeded)


def data_init_names() -> tuple[str, ...]:
    """Names of the data-driven inits (``--init``)."""
    return tuple(n for n, i in INITS.items() if not i.seeded)


def get_init(name: str, flag: str = "--init") -> AdapterInit:
    """The registered init ``name``; a one-line UsageError naming ``flag`` otherwise."""
    return INITS.lookup(name, flag)


def get_seeded_init(name: str) -> AdapterInit:
    if name not in seeded_init_names():
        raise UsageError(f"--a-init {name!r}: unknown (choose from {', '.join(seeded_init_names())})")
    return INITS[name]


register_init(kaiming.INIT)
register_init(gaussian.INIT)

__all__ = ["INITS", "AdapterInit", "data_init_names", "get_init", "get_seeded_init", "register_init",
           "seeded_init_names"]
