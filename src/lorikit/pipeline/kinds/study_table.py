"""``kind: study-table`` — the study's table with intervals, ``study.json`` and its report section.

Settings (``lorikit study`` writes them): ``runs``: {METHOD: {SEED: {single: {W: {TASK: $eval}},
merged: {W: {TASK: $eval}}, pairs: {A+B: {TASK: $eval}}, pair_weight: W, analysis: $report/analysis.json}}},
``base``: {TASK: $eval}, optional ``continual`` and ``bootstrap`` (resamples). The first method is
the reference of every "vs" column. Output: ``table.md``, ``study.json``, ``interference.png``
(and ``prediction.png``), written atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...utils.atomic import atomic_output_dir
from .base import StageKind, build_dataclass

logger = logging.getLogger(__name__)


@dataclass
class StudyTableSettings:
    runs: dict = field(default_factory=dict)
    base: dict = field(default_factory=dict)
    continual: dict | None = None
    bootstrap: int = 2000


class StudyTableKind(StageKind):
    name = "study-table"
    version = 2  # 2: the one-answer check (adapters that learned a label prior) in table.md / study.json
    summary = "the study table: accuracies, down-weighting vs interference, continual, prediction, with intervals"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        where = f"stage {stage!r} (study-table)"
        cfg = build_dataclass(StudyTableSettings, settings, where)
        if not cfg.runs or not all(isinstance(v, dict) and v for v in cfg.runs.values()):
            raise UsageError(f"{where}: 'runs' must map each method to its seeds' evals")
        if cfg.bootstrap <= 0:
            raise UsageError(f"{where}: bootstrap {cfg.bootstrap}: must be positive")
        return cfg

    def run(self, prepared: StudyTableSettings, out: Path) -> None:
        from ...study.summary import summarize
        from ...study import report

        study = summarize(prepared.runs, prepared.base, prepared.continual, prepared.bootstrap)
        with atomic_output_dir(out, overwrite=True) as tmp:
            text = report.write(tmp, study)
        logger.info("%s", text)

    def complete(self, out: Path) -> bool:
        return (out / "study.json").is_file() and (out / "table.md").is_file()


KIND = StudyTableKind()
