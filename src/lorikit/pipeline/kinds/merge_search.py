"""``kind: merge-search`` — ``lorikit.search.merge_search``: merge weights chosen on dev data.

Settings: every ``lorikit merge-search`` option (SearchConfig fields: ``adapters`` — usually
``$stage`` references — ``dev`` (one dev set per adapter), ``method``, ``budget``, ``search``,
``l1``, ``objective``, ...), except ``out`` and ``overwrite``. Output: the merged adapter at the
best weights with ``best.json``, ``search_log.jsonl`` and ``search.png`` beside it, so later stages
use ``$NAME`` as an adapter. A search interrupted mid-way resumes from its log on ``--resume``
(a log of other settings is discarded: the stage owns its folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...search.config import SearchConfig
from ...search.log import BEST
from .base import StageKind, build_dataclass


class MergeSearchKind(StageKind):
    name = "merge-search"
    summary = "search merge weights on dev data (CMA-ES) and write the merged adapter"

    def validate(self, stage: str, settings: dict[str, Any], out: Path) -> SearchConfig:
        from ...search.run import check_request  # torch, PEFT: loaded when a recipe has this kind, as other kinds do

        where = f"stage {stage!r} (merge-search)"
        cfg = build_dataclass(SearchConfig, settings, where, out=str(out), overwrite=False)
        try:
            check_request(cfg)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from exc
        return cfg

    def run(self, prepared: SearchConfig, out: Path) -> None:
        from ...search.run import merge_search

        merge_search(prepared, progress=True, restart_on_mismatch=True)

    def complete(self, out: Path) -> bool:
        return (out / BEST).is_file() and (out / "adapter_config.json").is_file()


KIND = MergeSearchKind()
