"""``kind: eval`` — ``lorikit.eval.runner.evaluate`` of a base model + optional adapter on one task.

Settings: every ``lorikit eval`` option (EvalConfig fields: ``model``, ``adapter``, ``task``,
``data``, ``limit``, ...), except ``out`` and ``overwrite``. Output: a folder holding
``result.json`` (score, settings, per-example records), written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...eval.result import RESULT
from ...utils.atomic import atomic_output_dir
from .base import StageKind, build_dataclass


class EvalKind(StageKind):
    name = "eval"
    summary = "evaluate a model + adapter on one task (gsm8k, nlu, builtin, safety, ...)"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...eval.config import EvalConfig

        return build_dataclass(EvalConfig, settings, f"stage {stage!r} (eval)", out=None, overwrite=True)

    def run(self, prepared, out: Path) -> None:
        from ...eval.runner import evaluate

        result = evaluate(prepared, progress=True)
        with atomic_output_dir(out, overwrite=True) as tmp:
            (tmp / RESULT).write_text(json.dumps(result, indent=2, default=str) + "\n")

    def complete(self, out: Path) -> bool:
        return (out / RESULT).is_file()


KIND = EvalKind()
