"""``kind: osrm-stats`` — ``lorikit.osrm.collect_stats``: per-task input statistics for OSRM.

Settings: every ``lorikit osrm-stats`` option (StatsConfig fields: ``model``, ``data``,
``samples``, ``max_length``, ``seed``, ``second_moment``, ...), except ``out`` and ``overwrite``.
``data`` is a TASK: SPEC mapping (or a list of ``TASK=SPEC``). Output: the statistics folder
(``osrm_stats.json`` + one ``<task>.safetensors`` per task) that a ``train`` stage reads with
``init: osrm, osrm_stats: $this-stage, task: NAME``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UsageError
from .base import StageKind, build_dataclass


class OsrmStatsKind(StageKind):
    name = "osrm-stats"
    summary = "record per-task input statistics of the target modules (OSRM init)"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...osrm.collect import StatsConfig

        where = f"stage {stage!r} (osrm-stats)"
        settings = dict(settings)
        data = settings.get("data")
        if isinstance(data, dict):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
                raise UsageError(f"{where}: setting 'data' must map task names to data specs (strings)")
            settings["data"] = [f"{task}={spec}" for task, spec in data.items()]
        return build_dataclass(StatsConfig, settings, where, out=str(out), overwrite=True)

    def run(self, prepared, out: Path) -> None:
        from ...osrm.collect import collect_stats

        collect_stats(prepared)

    def complete(self, out: Path) -> bool:
        import json

        from ...osrm.reader import MANIFEST

        try:
            tasks = json.loads((out / MANIFEST).read_text())["tasks"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return all((out / f"{task}.safetensors").is_file() for task in tasks)


KIND = OsrmStatsKind()
