"""``kind: train`` — ``lorikit.train.train`` on one data set.

Settings: every ``lorikit train`` option (TrainConfig and AdapterConfig fields, underscores as in
Python: ``max_steps``, ``method``, ``rank``, ``seed``, ...), except ``out`` and ``overwrite``
which the runner sets. Output: a PEFT adapter folder with lorikit.json and train_log.jsonl.
"""

from __future__ import annotations

import dataclasses
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
        from ...adapters.build import AdapterConfig
        from ...train.config import TrainConfig

        adapter_fields = {f.name for f in dataclasses.fields(AdapterConfig)}
        adapter_settings = {k: v for k, v in settings.items() if k in adapter_fields}
        run_settings = {k: v for k, v in settings.items() if k not in adapter_fields}
        where = f"stage {stage!r} (train)"
        adapter = build_dataclass(AdapterConfig, adapter_settings, where)
        return build_dataclass(TrainConfig, run_settings, where, out=str(out), overwrite=True, adapter=adapter)

    def run(self, prepared, out: Path) -> None:
        from ...train import train

        train(prepared)

    def complete(self, out: Path) -> bool:
        return all((out / f).is_file() for f in ("adapter_config.json", "adapter_model.safetensors", "lorikit.json"))


KIND = TrainKind()
