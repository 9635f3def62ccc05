"""``kind: merge`` — ``lorikit.merge.merge`` of several adapters (any registered method).

Settings: every ``lorikit merge`` option — the MergeConfig fields (``adapters``, usually a list of
``$stage`` references, ``method``, ``weights``, ``rank``, ``into_model``, ``task``, ...) except
``out`` and ``overwrite`` — and the method's own parameters by name (``density``, ``drop_rate``,
``lambda``, ``inner``, ...), checked against what the method registers. Output: the merged adapter
(or EMR folder, or model folder) with its lorikit.json.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .base import StageKind, build_dataclass

if TYPE_CHECKING:
    from ...merge.config import MergeConfig
    from ...merge.registry import MergePlan


class PreparedMerge(NamedTuple):
    """A validated merge stage: its config and the plan validation resolved (the run takes both as is)."""

    config: MergeConfig
    plan: MergePlan


class MergeKind(StageKind):
    name = "merge"
    summary = "merge adapters (any lorikit merge method: cat, ties, knots, core-space, ...)"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...errors import UsageError
        from ...merge.config import MergeConfig, param_names

        where = f"stage {stage!r} (merge)"
        fields = {f.name for f in dataclasses.fields(MergeConfig)} - {"method_params"}
        known = param_names()
        params = {known[k.replace("-", "_")]: v for k, v in settings.items()
                  if k not in fields and k.replace("-", "_") in known}
        rest = {k: v for k, v in settings.items() if k in fields or k.replace("-", "_") not in known}
        cfg = build_dataclass(MergeConfig, rest, where, out=str(out), overwrite=True, method_params=params)
        try:
            return PreparedMerge(cfg, cfg.validate())
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from exc

    def run(self, prepared: PreparedMerge, out: Path) -> None:
        from ...merge.core import merge

        merge(prepared.config, prepared.plan)

    def complete(self, out: Path) -> bool:
        return (out / "lorikit.json").is_file()


KIND = MergeKind()
