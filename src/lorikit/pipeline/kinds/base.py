"""The interface of a stage kind, and a checked dataclass builder for kinds' settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...utils.settings import coerce_settings


class StageKind:
    """One kind of stage. ``validate`` runs for every stage before anything runs; ``run`` writes
    the output folder ``out`` atomically (replacing an older one); ``complete`` says whether a
    folder found on disk is a finished output of this kind."""

    name: str = ""
    version: int = 1  # bump when the same settings would produce a different output
    summary: str = ""

    def validate(self, stage: str, settings: dict[str, Any], out: Path) -> Any:
        """Check resolved settings; return whatever ``run`` needs. Raise UsageError naming the stage."""
        raise NotImplementedError

    def run(self, prepared: Any, out: Path) -> None:
        raise NotImplementedError

    def complete(self, out: Path) -> bool:
        raise NotImplementedError

    def together_key(self, prepared: Any) -> Any:
        """Pending stages of this kind with the same key (not None) may run in one ``run_together``
        call once their parents are done; None (the default): the stage runs alone."""
        return None

    def run_together(self, prepared: list[Any], outs: list[Path]) -> None:
        raise NotImplementedError

    def resolved(self, settings: dict[str, Any], prepared: Any) -> dict[str, Any]:
        """What validation decided that the settings leave open, and that changes the output: the
        dtype ``auto`` became on this machine. Part of the stage's hash, so a bfloat16 run and a
        float32 one never count as the same stage; float32 (the default before ``auto``) is left
        out, so stages finished in float32 keep their hash."""
        dtype = getattr(prepared, "dtype", None)
        if settings.get("dtype", "auto") == "auto" and isinstance(dtype, str) and dtype != "float32":
            return {"dtype": dtype}
        return {}


def build_dataclass(cls: type, settings: dict[str, Any], where: str, **fixed: Any):
    """``cls(**settings, **fixed)`` with unknown keys ('did you mean') and wrong types reported
    against ``where``; values are validated with pydantic, so ``lr: 1e-3`` (a string to YAML 1.1)
    is the float 0.001."""
    checked = coerce_settings(cls, settings, where, skip=fixed)
    try:
        return cls(**checked, **fixed)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from exc
