"""``--init osrm``: OSRM's entry in the registry of initialisations of A (``adapters/inits``).

Registered when this module is imported (``TrainConfig`` imports it); the computation itself
(``init.py``, torch) loads when a run applies it.
"""

from __future__ import annotations

from typing import Any

from ..adapters.inits import AdapterInit, register_init
from ..errors import UsageError
from .config import MODES, OsrmInitConfig, check_scale


STATS_STAGE = "osrm-stats"  # a study's stage of every task's input statistics


class OsrmInit(AdapterInit):
    """``--init osrm``: the data-driven init of the init registry (``adapters/inits``)."""

    name = "osrm"
    summary = "A from --osrm-stats (orthogonal to the other tasks' inputs), B = 0"
    title = "OSRM"
    paper = "Zhang et al. 2025, Unraveling LoRA Interference: Orthogonal Subspaces for Robust Model Merging, ACL 2025"
    config_field = "osrm"
    settings = OsrmInitConfig

    def check(self, settings: OsrmInitConfig) -> None:
        if not settings.osrm_stats or not settings.task:
            raise UsageError("--init osrm: needs --osrm-stats FOLDER and --task NAME")
        if settings.osrm_mode not in MODES:
            raise UsageError(f"--osrm-mode {settings.osrm_mode!r}: unknown (choose from {', '.join(MODES)})")
        check_scale(settings.osrm_scale)

    def inputs(self, settings: OsrmInitConfig) -> list[str | None]:
        return [settings.osrm_stats]

    def study_train(self, task: str) -> dict[str, Any]:
        # OSRM as the paper runs it: LoRA (A and B trained) from the orthogonal A, at LoRA's scale
        return {"method": "lora", "init": self.name, "osrm_stats": f"${STATS_STAGE}", "task": task,
                "osrm_scale": "kaiming"}

    def study_stages(self, study: Any, data: dict[str, str]) -> dict[str, dict[str, Any]]:
        return {STATS_STAGE: {"kind": "osrm-stats", "model": study.model, "samples": study.osrm_samples,
                              "max_length": 128, "data": data}}

    def apply(self, peft_model, settings: OsrmInitConfig, base_model_id: str | None) -> dict:
        from .init import apply_osrm_init

        return apply_osrm_init(peft_model, settings.osrm_stats, settings.task, settings.osrm_mode,
                               settings.osrm_scale, base_model_id)


INIT = register_init(OsrmInit())
