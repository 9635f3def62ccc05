"""EMR merge folders: storage, reading and materialising of ``emr`` merges (methods/emr.py).

Per module, with task updates ΔW_i = w_i s_i B_i A_i (float32):

    γ      = sign(Σ_i ΔW_i)                                  elected sign
    m_i    = [ΔW_i ⊙ γ > 0]                                  task i's bit-mask
    τ_uni  = γ ⊙ max_i (|ΔW_i| ⊙ m_i)                         shared update (largest agreeing magnitude)
    λ_i    = Σ|ΔW_i| / Σ|m_i ⊙ τ_uni|                        task i's rescaler
    ΔW(i)  = λ_i · m_i ⊙ τ_uni                                the update used for task i

λ_i sums over every entry of the adapter (all modules), as the paper computes it over the whole
task vector, so each task gets one scalar. Inference needs the task id: a merge folder stores
τ_uni once (``emr.safetensors``, float32 per module), one packed bit-mask per task and module, and
the task names and rescalers (``emr.json``). ``materialize_emr(folder, task)`` turns it into that
task's PEFT adapter (truncated SVD at ``rank``); ``emr_task_deltas(folder, task)`` yields the exact
per-module updates (for adding to base weights).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..errors import LorikitError, UsageError

EMR_WEIGHTS = "emr.safetensors"
EMR_META = "emr.json"


@dataclass
class EmrModule:
    """One module's EMR result: shared τ_uni, masks m_i [N, out, in] and the terms of λ_i."""

    tau: torch.Tensor
    masks: torch.Tensor
    task_abs: torch.Tensor  # Σ|ΔW_i| over this module, per task (float64)
    masked_abs: torch.Tensor  # Σ|m_i ⊙ τ_uni| over this module, per task (float64)


def rescalers(task_abs: torch.Tensor, masked_abs: torch.Tensor) -> list[float]:
    """λ_i = Σ|ΔW_i| / Σ|m_i ⊙ τ_uni| from the per-task sums over all modules (0 / 0 → 1)."""
    return [float(a / m) if m > 0 else 1.0 for a, m in zip(task_abs.tolist(), masked_abs.tolist())]


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as packed bits (uint8, 8 entries per byte, row-major)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.packbits(mask.reshape(-1).numpy()))


def unpack_mask(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    import numpy as np
    import torch

    count = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=count).astype(bool)).reshape(shape)


def mask_key(module: str, task_index: int) -> str:
    return f"{module}.mask.{task_index}"


def tau_key(module: str) -> str:
    return f"{module}.tau"


class EmrFolder:
    """An EMR merge on disk, read lazily (one module's τ_uni and mask at a time)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        meta_path = self.folder / EMR_META
        if not meta_path.is_file() or not (self.folder / EMR_WEIGHTS).is_file():
            raise LorikitError(f"{self.folder}: not an EMR merge folder (needs {EMR_META} and {EMR_WEIGHTS})")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LorikitError(f"{meta_path}: unreadable ({exc})") from exc
        self.tasks: list[str] = list(self.meta["tasks"])
        self.rescalers: dict[str, float] = dict(self.meta["rescalers"])
        self.shapes: dict[str, list[int]] = dict(self.meta["modules"])

    def task_index(self, task: str) -> int:
        if task not in self.tasks:
            raise UsageError(f"--task {task!r}: not a task of {self.folder} (tasks: {', '.join(self.tasks)})")
        return self.tasks.index(task)

    def task_deltas(self, task: str) -> Iterator[tuple[str, torch.Tensor]]:
        """(module, λ_i · m_i ⊙ τ_uni) for every module, in float32."""
        from safetensors import safe_open

        index = self.task_index(task)
        scale = self.rescalers[task]
        with safe_open(str(self.folder / EMR_WEIGHTS), framework="pt") as fh:
            for module, shape in self.shapes.items():
                tau = fh.get_tensor(tau_key(module))
                mask = unpack_mask(fh.get_tensor(mask_key(module, index)), tuple(shape))
                yield module, scale * (tau * mask)


def emr_task_deltas(folder: str | os.PathLike, task: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The exact per-module updates ΔW(task) = λ_task · m_task ⊙ τ_uni of an EMR merge folder."""
    return EmrFolder(folder).task_deltas(task)


def materialize_emr(folder: str | os.PathLike, task: str, rank: int | None = None):
    """Task ``task`` of an EMR merge folder as a PEFT adapter (``AdapterState``).

    Each module's λ_i m_i ⊙ τ_uni is factored by truncated SVD at ``rank`` (default: the merge's
    ``rank``, the parents' largest); the relative Frobenius errors are in ``state.meta['svd']``.
    Save it with ``state.save(out)`` (a stock PEFT adapter). For the exact update instead, add
    ``emr_task_deltas(folder, task)`` to a model with ``lorikit.merge.in_memory_model``.
    """
    from .svd import SvdReport, factor

    emr_folder = EmrFolder(folder)
    rank = rank or int(emr_folder.meta["rank"])
    report = SvdReport(rank)
    modules = []
    for module, delta in emr_folder.task_deltas(task):
        lora, residual, total = factor(module, delta, rank)
        report.add(module, residual, total)
        modules.append(lora)
    from ..adapters.state import AdapterState

    meta = dict(emr_folder.meta.get("lorikit", {}))
    meta.update({"method": "merge:emr", "emr_task": task, "svd": report.summary()})
    return AdapterState.from_modules(modules, emr_folder.meta["adapter_config"], meta=meta)
