"""Reading an OSRM statistics folder (written by ``osrm/collect.py``): manifest, per-task tensors.

``osrm_stats.json`` holds the model, the tasks, the module → group map and the sizes; one
``<task>.safetensors`` per task holds ``<group>.mean``, ``<group>.count`` and
``<group>.second_moment``. Tensors are read lazily, one module at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import LorikitError, UsageError
from ..models.loading import TINY, canonical_model_id

MANIFEST = "osrm_stats.json"
FORMAT_VERSION = 1


def _shown(model_id: str) -> str:
    """The tiny model's cache folder is shown by its name; other ids as recorded."""
    return TINY if canonical_model_id(model_id) == TINY else model_id


class OsrmStats:
    """A statistics folder written by ``collect_stats``; tensors are read lazily per module."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise UsageError(f"--osrm-stats {folder}: no {MANIFEST} (not a folder written by lorikit osrm-stats)")
        try:
            self.manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LorikitError(f"{path}: unreadable ({exc})") from exc
        if self.manifest.get("format") != FORMAT_VERSION:
            raise LorikitError(f"{path}: format {self.manifest.get('format')!r}, expected {FORMAT_VERSION}")

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest["tasks"])

    @property
    def modules(self) -> dict[str, str]:
        return self.manifest["modules"]

    def check_model(self, base_model_id: str | None) -> None:
        if base_model_id is not None and canonical_model_id(base_model_id) != canonical_model_id(self.model):
            raise UsageError(f"--osrm-stats {self.folder}: statistics are of model {_shown(self.model)!r}, "
                             f"not of {_shown(base_model_id)!r}")

    def check_task(self, task: str) -> None:
        if task not in self.manifest["tasks"]:
            raise UsageError(f"--task {task!r}: not in --osrm-stats {self.folder} "
                             f"(tasks: {', '.join(self.tasks)})")

    def group(self, module: str) -> str:
        if module not in self.modules:
            raise UsageError(f"--osrm-stats {self.folder}: no statistics for module {module!r} "
                             f"(recorded: {len(self.modules)} modules, e.g. {next(iter(self.modules), '-')})")
        return self.modules[module]

    def _read(self, task: str, key: str) -> torch.Tensor:
        self.check_task(task)
        path = self.folder / self.manifest["tasks"][task]["file"]
        try:
            with safe_open(str(path), framework="pt") as fh:
                if key not in fh.keys():
                    raise LorikitError(f"{path}: tensor {key!r} missing")
                return fh.get_tensor(key)
        except LorikitError:
            raise
        except Exception as exc:
            raise LorikitError(f"{path}: unreadable statistics ({str(exc).splitlines()[0]})") from exc

    def count(self, task: str, module: str) -> int:
        return int(self._read(task, f"{self.group(module)}.count")[0])

    def mean(self, task: str, module: str) -> torch.Tensor:
        return self._read(task, f"{self.group(module)}.mean")

    def second_moment(self, task: str, module: str) -> torch.Tensor:
        if not self.manifest.get("second_moment", True):
            raise UsageError(f"--osrm-stats {self.folder}: collected without the second moment "
                             "(rerun osrm-stats without --no-second-moment, or use --osrm-mode mean)")
        return self._read(task, f"{self.group(module)}.second_moment")
