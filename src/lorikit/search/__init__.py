"""Merge weights chosen on data: a gradient-free (CMA-ES) search over per-adapter merge weights and
method knobs, scored on a small dev set per task (LoraHub-style). See docs/merge-search.md.

    from lorikit.search import SearchConfig, merge_search
    result = merge_search(SearchConfig(adapters=["runs/math", "runs/code"], dev=["math-dev.jsonl", "code-dev.jsonl"],
                                       method="cat", budget=40, out="merged/searched"))
    result.best["weights"], result.best["objective"]
"""

from .cmaes import Space, minimize
from .config import SearchConfig
from .log import EvalLog
from .run import SearchResult, merge_search

__all__ = ["EvalLog", "SearchConfig", "SearchResult", "Space", "merge_search", "minimize"]
