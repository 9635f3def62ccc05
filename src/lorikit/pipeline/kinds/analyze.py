"""``kind: analyze`` — the interference report of ``lorikit.analysis.analyze``.

Settings: ``adapters`` (list of ``$stage`` / paths / ``NAME=PATH``, or a NAME: PATH mapping;
required), ``data`` (TASK: SPEC mapping or TASK=SPEC list: adds output shift), ``model``,
``samples``, ``max_length``, ``masks`` (mask files), ``scores`` (score JSON), ``sweep`` (a
``{series: {weight: $eval-stage}}`` mapping or a JSON file: the merge-weight plot), ``device``.
Output: the report folder (report.md, PNGs, analysis.json).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UsageError
from .base import StageKind, build_dataclass


@dataclass
class AnalyzeSettings:
    adapters: list[str] | dict[str, str] = field(default_factory=list)
    data: list[str] | dict[str, str] | None = None
    model: str | None = None
    samples: int = 16
    max_length: int = 256
    masks: list[str] | dict[str, str] | None = None
    scores: str | None = None
    sweep: str | dict[str, Any] | None = None
    device: str = "cpu"


class AnalyzeKind(StageKind):
    name = "analyze"
    summary = "interference report: subspace overlap, ΔW cosine, output shift, mask Jaccard"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        where = f"stage {stage!r} (analyze)"
        cfg = build_dataclass(AnalyzeSettings, settings, where)
        if not cfg.adapters:
            raise UsageError(f"{where}: 'adapters' is required (a list of $stage references or paths)")
        if cfg.samples <= 0:
            raise UsageError(f"{where}: samples {cfg.samples}: must be positive")
        return cfg

    def run(self, prepared: AnalyzeSettings, out: Path) -> None:
        from ...analysis import analyze

        analyze(out=out, overwrite=True, **asdict(prepared))

    def complete(self, out: Path) -> bool:
        return (out / "report.md").is_file() and (out / "analysis.json").is_file()


KIND = AnalyzeKind()
