"""Registry of the initialisations of A: seeded ones here, data-driven ones register themselves.

``kaiming`` and ``gaussian`` (seeded: A = f(seed, module)) are listed below; a data-driven init
(OSRM, ``osrm/init.py``) lives with the code that computes its statistics, one floor up, and calls
``register_init`` when its module is imported (``lorikit.train`` imports it). Adding an init =
one file with an ``AdapterInit`` subclass, listed here (seeded) or registering itself.
"""

from __future__ import annotations

from ...errors import UsageError
from . import gaussian, kaiming
from .base import AdapterInit

INITS: dict[str, AdapterInit] = {}


def register_init(init: AdapterInit) -> AdapterInit:
    """Add ``init`` to the registry (its name must be new)."""
    if not init.name or init.name in INITS:
        raise ValueError(f"init name {init.name!r} is empty or already registered")
    INITS[init.name] = init
    return init


def seeded_init_names() -> tuple[str, ...]:
    """Names valid for ``--a-init`` (A = f(seed, module))."""
    return tuple(n for n, i in INITS.items() if i.seeded)


def data_init_names() -> tuple[str, ...]:
    """Names of the data-driven inits (``--init``)."""
    return tuple(n for n, i in INITS.items() if not i.seeded)


def get_init(name: str, flag: str = "--init") -> AdapterInit:
    """The registered init ``name``; a one-line UsageError naming ``flag`` otherwise."""
    if name not in INITS:
        raise UsageError(f"{flag} {name!r}: unknown (choose from {', '.join(INITS)})")
    return INITS[name]


def get_seeded_init(name: str) -> AdapterInit:
    if name not in seeded_init_names():
        raise UsageError(f"--a-init {name!r}: unknown (choose from {', '.join(seeded_init_names())})")
    return INITS[name]


register_init(kaiming.INIT)
register_init(gaussian.INIT)

__all__ = ["INITS", "AdapterInit", "data_init_names", "get_init", "get_seeded_init", "register_init",
           "seeded_init_names"]
