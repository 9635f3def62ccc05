"""``kind: merge`` — ``lorikit.merge.merge`` of several adapters (any method).

Settings: every ``lorikit merge`` option (MergeConfig fields: ``adapters`` — a list, usually of
``$stage`` references — ``method``, ``weights``, ``lam``, ``density``, ``drop_rate``, ``seed``,
``rank``, ``into_model``, ``task``, ...), except ``out`` and ``overwrite``. Output: the merged
adapter (or EMR folder, or model folder) with its lorikit.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import StageKind, build_dataclass


class MergeKind(StageKind):
    name = "merge"
    summary = "merge adapters (cat, linear, task-arithmetic, ties, dare-*, magnitude-prune, emr)"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...errors import UsageError
        from ...merge.config import MergeConfig

        where = f"stage {stage!r} (merge)"
        cfg = build_dataclass(MergeConfig, settings, where, out=str(out), overwrite=True)
        try:
            cfg.validate()
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from exc
        return cfg

    def run(self, prepared, out: Path) -> None:
        from ...merge.core import merge

        merge(prepared)

    def complete(self, out: Path) -> bool:
        return (out / "lorikit.json").is_file()


KIND = MergeKind()
