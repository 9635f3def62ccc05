"""``kind: masks`` — LoRI-S masks of a trained LoRI-D adapter.

Settings: ``adapter`` (usually a ``$stage`` reference), ``sparsity`` (a number or a list),
``scope`` (global | module). Output: a self-contained copy of the adapter (a few MB: config,
weights, lorikit.json) with ``masks/{sparsity}_mask.pt`` beside it — the layout LoRI-S training
reads A from — so the parent stage's folder is never modified.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...utils.atomic import atomic_output_dir
from .base import StageKind, build_dataclass

log = logging.getLogger(__name__)

COPIED = ("adapter_config.json", "adapter_model.safetensors", "lorikit.json")


@dataclass
class MasksSettings:
    adapter: str = field(default="", metadata={"help": "trained LoRI-D adapter folder"})
    sparsity: float | list[float] = field(default=0.9, metadata={"help": "fraction of B's entries masked out"})
    scope: str = field(default="global", metadata={"help": "global (one top-k over all modules) or module"})


class MasksKind(StageKind):
    name = "masks"
    summary = "extract LoRI-S masks (top-k |B|) from a LoRI-D adapter"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...adapters.masks import check_sparsity
        from ...errors import UsageError

        where = f"stage {stage!r} (masks)"
        cfg = build_dataclass(MasksSettings, settings, where)
        if not cfg.adapter:
            raise UsageError(f"{where}: setting 'adapter' is required")
        if cfg.scope not in ("global", "module"):
            raise UsageError(f"{where}: scope {cfg.scope!r} is not global or module")
        sparsities = cfg.sparsity if isinstance(cfg.sparsity, list) else [cfg.sparsity]
        try:
            cfg.sparsity = [check_sparsity(float(s)) for s in sparsities]
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from exc
        return cfg

    def run(self, prepared: MasksSettings, out: Path) -> None:
        from ...adapters.masks import MASK_DIR, write_masks

        with atomic_output_dir(out, overwrite=True) as tmp:
            for name in COPIED:
                src = Path(prepared.adapter) / name
                if src.is_file():
                    shutil.copy2(src, tmp / name)
            for path, result in write_masks(tmp, prepared.sparsity, prepared.scope, out_dir=tmp / MASK_DIR):
                log.info("%s: kept %.4f%% of B", path.name, 100 * result.kept_fraction)

    def complete(self, out: Path) -> bool:
        return (out / "adapter_config.json").is_file() and any((out / "masks").glob("*_mask.pt"))


KIND = MasksKind()
