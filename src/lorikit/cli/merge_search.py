"""``lorikit merge-search``."""

from __future__ import annotations

import dataclasses

from ..search.config import SearchConfig
from ..utils.outputs import guard_output
from ._args import add_dataclass_args


def register(sub) -> None:
    p = sub.add_parser(
        "merge-search", help="choose merge weights on dev data (CMA-ES, LoraHub-style) and write the merge",
        description="Search per-adapter merge weights (and optionally a method knob such as TIES' density) "
                    "that minimise the dev objective of each task's dev set, gradient-free with CMA-ES, then "
                    "write the merged adapter at the best point with best.json, search_log.jsonl and "
                    "search.png beside it. Rerunning on the same --out replays the logged evaluations.")
    p.add_argument("adapters", nargs="+", help="PEFT LoRA adapter folders or Hub ids, one per task")
    add_dataclass_args(p, SearchConfig, group="search")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..search.run import format_summary, merge_search

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SearchConfig) if hasattr(args, f.name)}
    cfg = SearchConfig(**values)
    guard_output(cfg.out, [cfg.adapters, cfg.dev, cfg.model])
    result = merge_search(cfg)
    print(format_summary(result))
    print(f"lorikit: merged adapter, best.json and search.png written to {result.out}")
    return 0
