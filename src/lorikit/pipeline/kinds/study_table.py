"""``kind: study-table`` — the study's table with intervals, ``study.json`` and its report section.

Settings (``lorikit study`` writes them): ``runs``: {METHOD: {SEED: {single: {W: {TASK: $eval}},
merged: {W: {TASK: $eval}}, pairs: {A+B: {TASK: $eval}}, pair_weight: W, analysis: $report/analysis.json}}},
``base``: {TASK: $eval}, optional ``continual``; ``primary`` (``dev`` or a weight), ``alpha`` and
``equivalence_margin``, ``learned_at`` (the study's declared analysis); optional ``archive``: a committed outcomes
file whose evals and trainings stand in for the stages that did not run here (``lorikit study --resume-from``;
its SHA-256 is part of the stage's hash). The first method is the reference of every
"vs" column. Output: ``table.md``, ``study.json``, ``primary.png``, ``interference.png``
(``continual.png`` with a continual arm, ``prediction.png`` with pairwise merges), written atomically.
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
    primary: str = "dev"
    alpha: float = 0.05
    equivalence_margin: float = 0.05
    learned_at: float = 0.9
    archive: str | None = None


class StudyTableKind(StageKind):
    name = "study-table"
    version = 4  # 3: run-level comparisons (compare_runs), primary endpoint, Holm, TOST; 4: learned runs
    summary = "the study table: accuracies, down-weighting vs interference, continual, prediction, with intervals"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        where = f"stage {stage!r} (study-table)"
        cfg = build_dataclass(StudyTableSettings, settings, where)
        if not cfg.runs or not all(isinstance(v, dict) and v for v in cfg.runs.values()):
            raise UsageError(f"{where}: 'runs' must map each method to its seeds' evals")
        if not 0 < cfg.alpha < 0.5 or not 0 < cfg.equivalence_margin < 1 or not 0 < cfg.learned_at <= 1:
            raise UsageError(f"{where}: alpha must be in (0, 0.5), equivalence_margin in (0, 1) and learned_at in (0, 1]")
        if cfg.archive is not None and not Path(cfg.archive).is_file():
            raise UsageError(f"{where}: archive {cfg.archive}: no such file")
        return cfg

    def resolved(self, settings: dict[str, Any], prepared: StudyTableSettings) -> dict[str, Any]:
        """The archive's content, not only its path: a newer commit of the outcomes makes a new table."""
        if prepared.archive is None:
            return {}
        import hashlib

        return {"archive_sha256": hashlib.sha256(Path(prepared.archive).read_bytes()).hexdigest()}

    def run(self, prepared: StudyTableSettings, out: Path) -> None:
        from ...analysis.study import report
        from ...analysis.study.outcomes import FILE, collect, load
        from ...analysis.study.summary import summarize

        store = collect(prepared.runs, prepared.base, prepared.continual,
                        declared={"primary": prepared.primary, "alpha": prepared.alpha,
                                  "equivalence_margin": prepared.equivalence_margin,
                                  "learned_at": prepared.learned_at},
                        archive=load(prepared.archive) if prepared.archive else None)
        study = summarize(store)
        with atomic_output_dir(out, overwrite=True) as tmp:
            store.save(tmp / FILE)
            text = report.write(tmp, study)
        logger.info("%s", text)

    def complete(self, out: Path) -> bool:
        return (out / "study.json").is_file() and (out / "table.md").is_file()


KIND = StudyTableKind()
