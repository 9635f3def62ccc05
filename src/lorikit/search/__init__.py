"""Merge weights chosen on data: a gradient-free (CMA-ES) search over per-adapter merge weights and
method knobs, scored on a small dev set per task (LoraHub-style). See docs/merge-search.md.

    from lorikit.search import SearchConfig, merge_search
    result = merge_search(SearchConfig(adapters=["runs/math", "runs/code"], dev=["math-dev.jsonl", "code-dev.jsonl"],
                                       method="cat", budget=40, out="merged/searched"))
    result.best["weights"], result.best["objective"]

``SearchConfig`` is light; the search itself (torch, PEFT, cma, matplotlib) loads on first use,
so the command line's help stays fast.
"""

from __future__ import annotations

import importlib

from .config import SearchConfig

_LAZY = {"merge_search": "run", "SearchResult": "run", "format_summary": "run", "minimize": "cmaes",
         "Space": "cmaes", "EvalLog": "log"}
__all__ = ["SearchConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
