"""OSRM as an initialisation step of any PEFT LoRA model, in the style of PEFT's EVA.

OSRM (Zhang et al., "Unraveling LoRA Interference: Orthogonal Subspaces for Robust Model
Merging", 2025) gives task t's LoRA an A whose rows the *other* tasks' inputs do not excite:
``mean`` mode takes the null space of the other tasks' mean inputs μ_k (the official code),
``cov`` mode the r eigenvectors of Σ_{k≠t} Σ_tokens h hᵀ with the smallest eigenvalues (the
paper); B = 0, so ΔW = 0 at the start. Statistics count real tokens only (attention_mask = 1)::

    stats = {name: collect_osrm_stats(base_model, loader) for name, loader in loaders.items()}
    peft_model = get_peft_model(base_model, LoraConfig(r=8, target_modules=[...]))
    initialize_osrm_weights(peft_model, stats, task="math", mode="cov")

or directly ``initialize_osrm_weights(peft_model, {"code": loader1, "math": loader2}, task="math")``,
or with a folder written by ``lorikit osrm-stats``.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch
from tqdm.auto import tqdm

from ..adapters.build import DEFAULT_TARGETS, lora_layers
from ..errors import LorikitError, UsageError
from ..osrm.init import MODES, apply_osrm_init
from ..osrm.stats import InputRecorder, OsrmStats, body_of
from .peft_lori import INFO_ATTR, lori_info


@dataclass
class TaskStats:
    """One task's statistics: per module group ``count``, ``mean`` and (optionally) ``second_moment``."""

    tensors: dict[str, torch.Tensor]
    group_of: dict[str, str]  # module path -> module whose statistics it shares
    second_moment: bool = True
    tokens: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def get(self, module: str, key: str) -> torch.Tensor:
        if module not in self.group_of:
            raise UsageError(f"osrm stats: no statistics for module {module!r} "
                             f"(recorded {len(self.group_of)} modules, e.g. {next(iter(self.group_of), '-')})")
        name = f"{self.group_of[module]}.{key}"
        if name not in self.tensors:
            hint = " (collected without the second moment: use mode='mean')" if key == "second_moment" else ""
            raise UsageError(f"osrm stats: no {key} recorded for module {module!r}{hint}")
        return self.tensors[name]


class MemoryStats:
    """Several tasks' ``TaskStats`` behind the reading interface of a ``lorikit osrm-stats`` folder."""

    folder = "<memory>"

    def __init__(self, per_task: Mapping[str, TaskStats], model: str | None = None):
        self.per_task = dict(per_task)
        self.model = model

    @property
    def tasks(self) -> list[str]:
        return list(self.per_task)

    def check_task(self, task: str) -> None:
        if task not in self.per_task:
            raise UsageError(f"task={task!r}: no statistics for it (tasks: {', '.join(self.tasks)})")

    def check_model(self, base_model_id) -> None:
        """In-memory statistics carry no model name; nothing to compare."""

    def mean(self, task: str, module: str) -> torch.Tensor:
        self.check_task(task)
        return self.per_task[task].get(module, "mean")

    def second_moment(self, task: str, module: str) -> torch.Tensor:
        self.check_task(task)
        if not self.per_task[task].second_moment:
            raise UsageError(f"task {task!r}: statistics collected without the second moment (use mode='mean')")
        return self.per_task[task].get(module, "second_moment")


def _batch_tensors(batch) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise UsageError("dataloader: batches must hold 'input_ids' (and 'attention_mask')")
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
    elif isinstance(batch, (tuple, list)):
        ids, mask = batch[0], batch[1] if len(batch) > 1 else None
    elif isinstance(batch, torch.Tensor):
        ids, mask = batch, None
    else:
        raise UsageError(f"dataloader: unsupported batch type {type(batch).__name__}")
    return ids, (torch.ones_like(ids) if mask is None else mask)


def _targets(model, target_modules) -> list[tuple[str, torch.nn.Module]]:
    layers = list(lora_layers(model))
    if layers:  # a PeftModel: record the frozen base Linear of every adapted module
        return [(name, layer.get_base_layer()) for name, layer in layers]
    wanted = set(target_modules or DEFAULT_TARGETS)
    found = [(n, m) for n, m in model.named_modules() if n and n.rsplit(".", 1)[-1] in wanted
             and isinstance(m, torch.nn.Linear)]
    if not found:
        raise UsageError(f"target_modules {sorted(wanted)}: no Linear module of this model matches")
    return found


@torch.no_grad()
def collect_osrm_stats(model: torch.nn.Module, dataloader: Iterable, target_modules: list[str] | None = None,
                       second_moment: bool = True, max_batches: int | None = None,
                       desc: str = "osrm-stats") -> TaskStats:
    """Input statistics of every target module over ``dataloader`` (real tokens only).

    ``model``: the pretrained model, or a PeftModel (its adapters are switched off while recording
    and its adapted modules are the targets). Batches: dicts with ``input_ids`` and
    ``attention_mask`` (a Trainer/TRL collator's output), ``(input_ids, attention_mask)`` tuples
    or bare ``input_ids`` tensors.
    """
    targets = _targets(model, target_modules)
    recorder = InputRecorder(model, [], second_moment, targets=targets)
    device = next(model.parameters()).device
    body = body_of(model)
    is_peft = bool(list(lora_layers(model))) and hasattr(model, "disable_adapter")
    off = model.disable_adapter() if is_peft else nullcontext()
    batches = 0
    try:
        with off:
            for batch in tqdm(dataloader, desc=desc, unit="batch", dynamic_ncols=True):
                if max_batches is not None and batches >= max_batches:
                    break
                ids, mask = _batch_tensors(batch)
                ids, mask = ids.to(device), mask.to(device)
                recorder.mask = mask.bool()
                recorder.begin_grouping()
                body(input_ids=ids, attention_mask=mask, use_cache=False)
                recorder.end_grouping()
                batches += 1
    finally:
        recorder.close()
    if not recorder.count:
        raise LorikitError("dataloader: no batches (or no real tokens) to collect statistics from")
    tokens = next(iter(recorder.count.values()))
    return TaskStats(tensors=recorder.tensors(), group_of=dict(recorder.group_of), second_moment=second_moment,
                     tokens=tokens, info={"batches": batches})


def _as_stats(peft_model, stats_or_dataloaders):
    if isinstance(stats_or_dataloaders, (str, os.PathLike)):
        return OsrmStats(stats_or_dataloaders)
    if isinstance(stats_or_dataloaders, (OsrmStats, MemoryStats)):
        return stats_or_dataloaders
    if not isinstance(stats_or_dataloaders, Mapping) or not stats_or_dataloaders:
        raise UsageError("stats_or_dataloaders: a statistics folder, or a dict task -> TaskStats or dataloader")
    per_task = {}
    for name, value in stats_or_dataloaders.items():  # every entry checked before any is collected
        if not isinstance(value, TaskStats) and not hasattr(value, "__iter__"):
            raise UsageError(f"stats_or_dataloaders[{name!r}]: {type(value).__name__} is neither TaskStats nor "
                             f"a dataloader of batches")
    for name, value in stats_or_dataloaders.items():
        per_task[name] = value if isinstance(value, TaskStats) else collect_osrm_stats(
            peft_model, value, desc=f"osrm-stats {name}")
    return MemoryStats(per_task)


def initialize_osrm_weights(peft_model, stats_or_dataloaders, task: str, mode: str = "mean",
                            scale: str | float = "unit", adapter_name: str = "default") -> dict[str, Any]:
    """Set every LoRA A of ``peft_model`` to its OSRM projection for ``task`` (× ``scale``), B to 0.

    ``stats_or_dataloaders``: a ``lorikit osrm-stats`` folder, or ``{task: TaskStats | dataloader}``
    for every task (``task`` and at least one other). Returns the record stored in lorikit.json
    (``init``); A stays trainable (OSRM's default; freeze it with ``requires_grad_(False)``).
    """
    if mode not in MODES:
        raise UsageError(f"mode={mode!r}: unknown (choose from {', '.join(MODES)})")
    if not list(lora_layers(peft_model, adapter_name)):
        raise UsageError(f"peft_model: no LoRA adapter named {adapter_name!r} (wrap the model with get_peft_model)")
    stats = _as_stats(peft_model, stats_or_dataloaders)
    base_id = peft_model.peft_config[adapter_name].base_model_name_or_path if isinstance(stats, OsrmStats) else None
    record = apply_osrm_init(peft_model, stats, task, mode, scale, base_id, adapter_name)
    info = lori_info(peft_model) or {"method": "lora", "seed": None, "a_init": "osrm", "task": task,
                                     "base_model": peft_model.peft_config[adapter_name].base_model_name_or_path,
                                     "built_with": "lorikit.integrations.initialize_osrm_weights"}
    info.update(init=record, a_init="osrm")
    setattr(peft_model, INFO_ATTR, info)
    return record
