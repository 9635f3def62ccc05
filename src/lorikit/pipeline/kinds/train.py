"""``kind: train`` — ``lorikit.train.train`` on one data set.

Settings: every ``lorikit train`` option (TrainConfig fields and those of its sub-configs, underscores
as in Python: ``max_steps``, ``method``, ``rank``, ``seed``, ``osrm_stats``, ...), except ``out`` and ``overwrite``
which the runner sets. Output: a PEFT adapter folder with lorikit.json and train_log.jsonl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import StageKind, build_dataclass


class TrainKind(StageKind):
    name = "train"
    # 2: a run without an explicit seed derives it from its data (it was 0), so such a stage's
    # adapter changed; resume must redo it.
    version = 2
    summary = "train one adapter (lora / lori-d / ...) with lorikit.train"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...train.config import SUBCONFIGS, TrainConfig, split_settings

        own, parts = split_settings(settings)
        where = f"stage {stage!r} (train)"
        subs = {name: build_dataclass(cls, parts[name], where) for name, cls in SUBCONFIGS.items()}
        return build_dataclass(TrainConfig, own, where, out=str(out), overwrite=True, **subs)

    def run(self, prepared, out: Path) -> None:
        from ...train import train

        train(prepared)

    def complete(self, out: Path) -> bool:
        return all((out / f).is_file() for f in ("adapter_config.json", "adapter_model.safetensors", "lorikit.json"))


KIND = TrainKind()
