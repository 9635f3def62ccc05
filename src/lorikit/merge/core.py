"""Run a merge: load and check the adapters, combine per module, write the result atomically.

Outputs, by method kind and options:
- adapter-space (``cat``, ``linear``): a PEFT adapter with the combined factors.
- factor-space (KnOTS, Core Space, TSV-M, Iso-C/CTS): merged in the span of the factors, a PEFT
  adapter of rank ≤ Σ r_i, truncated in factor space at ``rank`` when given (``svd_errors.json``).
- delta-space (task arithmetic, TIES, DARE, magnitude prune): per module ΔW in float32, then a
  PEFT adapter by truncated SVD at ``rank`` (``svd_errors.json``), or with ``into_model`` the base
  model with ΔW added (safetensors shards, streamed).
- ``emr``: an EMR folder (``emr.safetensors`` + ``emr.json``), or with ``task`` that task's
  adapter / model.
Every output has a ``lorikit.json`` naming the method, its parameters and the parents.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .._version import __version__
from ..adapters.state import LORIKIT_META, AdapterState, load_adapter
from ..errors import LorikitError, UsageError
from ..models.loading import canonical_model_id
from ..utils.atomic import atomic_output_dir, atomic_write_json
from ..utils.registry import reference
from .config import MergeConfig, parse_size
from .emr import EMR_META, EMR_WEIGHTS, mask_key, pack_mask, rescalers, tau_key
from .registry import DeltaParams, MergePlan, plan
from .svd import SvdReport

log = logging.getLogger(__name__)

SVD_ERRORS = "svd_errors.json"


# ---- checks ------------------------------------------------------------------------------------
def check_compatible(states: list[AdapterState], labels: list[str] | None = None) -> None:
    """Refuse adapters that cannot be merged, naming the first mismatch against adapter 1."""
    labels = labels or [s.source for s in states]
    ref, ref_label = states[0], labels[0]
    for state, label in zip(states, labels):
        if state.config.get("use_dora"):
            raise LorikitError(f"{label}: a DoRA adapter (use_dora) is not a plain B A update and cannot be merged")
        extra = sorted(state.other_tensors())
        if extra:
            raise LorikitError(f"{label}: holds non-LoRA tensor {extra[0]} (modules_to_save), which cannot be merged")
    for state, label in zip(states[1:], labels[1:]):
        for key, what, default in (("peft_type", "PEFT type", "LORA"), ("base_model_name_or_path", "base model", None),
                                   ("fan_in_fan_out", "fan_in_fan_out", False)):
            a, b = ref.config.get(key, default), state.config.get(key, default)
            if key == "peft_type":
                a, b = str(a).upper(), str(b).upper()
            if key == "base_model_name_or_path":  # alias and folder of one model are the same base
                a, b = canonical_model_id(a), canonical_model_id(b)
            if a != b:
                raise LorikitError(f"{label}: {what} {b!r} differs from {ref_label}: {a!r}")
        ref_mods, mods = ref.modules(), state.modules()
        for name in ref_mods:
            if name not in mods:
                raise LorikitError(f"{label}: target modules differ: no {name} (which {ref_label} adapts)")
        for name in mods:
            if name not in ref_mods:
                raise LorikitError(f"{label}: target modules differ: adapts {name} (which {ref_label} does not)")
        for name, m in ref_mods.items():
            a_shape, b_shape = (m.B.shape[0], m.A.shape[1]), (mods[name].B.shape[0], mods[name].A.shape[1])
            if a_shape != b_shape:
                raise LorikitError(f"{label}: module {name} is {b_shape[0]}×{b_shape[1]} (out × in), "
                                   f"{a_shape[0]}×{a_shape[1]} in {ref_label}")


def check_finite(states: list[AdapterState], labels: list[str] | None = None) -> None:
    """Refuse NaN/inf factors: they would poison every merged module (and make SVD fail)."""
    labels = labels or [str(s.source) for s in states]
    for label, state in zip(labels, states):
        for name, m in state.modules().items():
            for which, t in (("A", m.A), ("B", m.B)):
                if not torch.isfinite(t).all():
                    raise LorikitError(f"{label}: lora_{which} of {name} holds NaN or inf values "
                                       "(a diverged training?); cannot merge it")


# ---- in-memory merges ----------------------------------------------------------------------------
class Merger:
    """The per-module merge of loaded, compatible adapters (no I/O); the Python API."""

    def __init__(self, states: list[AdapterState], method: str | MergePlan, weights: list[float] | None = None,
                 params: DeltaParams | dict | None = None, labels: list[str] | None = None):
        """``method``: a name (with ``params`` resolved here, unused ones dropped) or a ``MergePlan``
        from ``MergeConfig.validate`` (taken as is)."""
        self.states = states
        if not isinstance(method, MergePlan):
            given = params.values if isinstance(params, DeltaParams) else dict(params or {})
            method = plan(method, given, strict=False)
        self.method, self.params, self.kind = method.method, method.params, method.kind
        self.weights = [1.0] * len(states) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(states):
            raise UsageError(f"weights: {len(self.weights)} weight(s) for {len(states)} adapter(s)")
        bad = [w for w in self.weights if not math.isfinite(w)]
        if bad:
            raise UsageError(f"weights: {bad[0]} is not a finite number")
        if len(states) < self.method.min_adapters:
            raise UsageError(f"--method {self.method.name}: needs at least {self.method.min_adapters} adapters, "
                             f"got {len(states)}")
        check_compatible(states, labels)
        check_finite(states, labels)
        self.modules = list(states[0].modules())
        self._emr_scales: list[float] | None = None

    def parts(self, module: str):
        return [s.modules()[module] for s in self.states]

    def factors(self, module: str):
        """The combined LoraModule of an adapter- or factor-space method (float32, any rank)."""
        return self.method.fn(self.parts(module), self.weights, self.params.at(module))

    def deltas(self, module: str) -> list[torch.Tensor]:
        return [m.delta() for m in self.parts(module)]

    def emr_module(self, module: str):
        return self.method.fn(self.deltas(module), torch.tensor(self.weights, dtype=torch.float32))

    def emr_scales(self) -> list[float]:
        """λ_i over all modules (one pass computing each module's EMR)."""
        if self._emr_scales is None:
            task_abs = masked_abs = 0
            for module in tqdm(self.modules, desc="emr rescalers", unit="module", leave=False):
                part = self.emr_module(module)
                task_abs, masked_abs = task_abs + part.task_abs, masked_abs + part.masked_abs
            self._emr_scales = rescalers(task_abs, masked_abs)
        return self._emr_scales

    def delta(self, module: str, task_index: int | None = None) -> torch.Tensor:
        """The merged full update ΔW of ``module`` (float32; EMR: of task ``task_index``)."""
        return self.kind.delta(self, module, task_index)

    def iter_deltas(self, task_index: int | None = None, desc: str = "merge") -> Iterator[tuple[str, torch.Tensor]]:
        for module in tqdm(self.modules, desc=desc, unit="module", leave=False):
            yield module, self.delta(module, task_index)

    def to_adapter(self, rank: int | None = None, task_index: int | None = None,
                   meta: dict | None = None, portable: bool = True) -> tuple[AdapterState, SvdReport | None]:
        """The merge as a PEFT adapter: exact factors (cat/linear) or truncated SVD at ``rank``.

        Delta-space methods: ``rank`` defaults to the largest parent rank. Factor-space methods:
        without ``rank`` the exact result (its numerical rank), else truncated in factor space.
        ``portable``: one rank and one scale for all modules (``AdapterState.from_modules``).
        """
        def progress(modules):
            return tqdm(modules, desc=self.method.name, unit="module", leave=False)

        return self.kind.to_adapter(self, rank, task_index, meta, progress, portable)

    def config(self) -> dict:
        return adapter_config(self.states)

    def max_rank(self) -> int:
        return max(m.rank for s in self.states for m in s.modules().values())


def adapter_config(states: list[AdapterState]) -> dict:
    """The output adapter_config.json template: the first parent's, made plain LoRA for inference."""
    config = dict(states[0].config)
    config.update({"peft_type": "LORA", "inference_mode": True, "use_dora": False, "modules_to_save": None,
                   "lora_dropout": 0.0})
    return config


# ---- top level -----------------------------------------------------------------------------------
def merge(cfg: MergeConfig, resolved: MergePlan | None = None) -> Path:
    """Run the merge ``cfg`` describes and return the output folder. ``resolved``: what
    ``cfg.validate()`` returned, when the caller validated already (taken as is)."""
    resolved = resolved or cfg.validate()
    t0 = time.perf_counter()
    states = [load_adapter(a) for a in cfg.adapters]
    names = cfg.task_names()
    merger = Merger(states, resolved, cfg.weights, labels=list(cfg.adapters))
    check_base_model(cfg, states)
    task_index = None
    if cfg.task is not None:
        if cfg.task not in names:
            raise LorikitError(f"--task {cfg.task!r}: not one of the task names {', '.join(names)} "
                               f"(set them with --names)")
        task_index = names.index(cfg.task)
    meta = merge_meta(cfg, states, names, merger)
    out = Path(cfg.out)
    with atomic_output_dir(out, cfg.overwrite, inputs=[*cfg.adapters, cfg.model]) as tmp:
        if cfg.into_model:
            from .into_model import BaseWeights, write_model

            model_name = cfg.model or _default_model(states)
            base = BaseWeights(model_name)
            info = write_model(base, lambda m: merger.delta(m, task_index), merger.modules, tmp,
                               parse_size(cfg.max_shard_size), transpose=bool(states[0].config.get("fan_in_fan_out")),
                               desc=f"{cfg.method} → model")
            meta.update({"output": "model", "model": model_name, "shards": info["shards"]})
            atomic_write_json(tmp / LORIKIT_META, meta)
            log.info("%s of %d adapters added to %s: %d modules, %d shard(s)", cfg.method, len(states),
                     model_name, info["modules"], info["shards"])
        elif merger.kind.per_task and task_index is None:
            write_emr(merger, names, tmp, meta)
            log.info("EMR merge of %d adapters: tasks %s; rescalers %s", len(states), ", ".join(names),
                     ", ".join(f"{r:.4g}" for r in merger.emr_scales()))
        else:
            meta["output"] = "adapter"
            state, report = merger.to_adapter(cfg.rank, task_index, meta, portable=cfg.rank_pattern == "pad")
            if cfg.rank_pattern == "pad":
                state.meta["serving"] = serving_ranks(state.config["r"])
            state.save_into(tmp)
            if report is not None:
                atomic_write_json(tmp / SVD_ERRORS, report.to_json())
                for line in report.lines():
                    log.info("%s", line)
            ranks = sorted({m.rank for m in state.modules().values()})
            log.info("%s of %d adapters → adapter of rank %s", cfg.method, len(states),
                     ranks[0] if len(ranks) == 1 else ranks)
    log.info("merged in %.1f s", time.perf_counter() - t0)
    return out


# vLLM's allowed max_lora_rank values (vllm/config/lora.py)
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def serving_ranks(r: int) -> dict:
    """What a server must allow for this adapter: vLLM's smallest ``--max-lora-rank`` ≥ r."""
    fits = [v for v in VLLM_MAX_LORA_RANKS if v >= r]
    return {"r": r, "vllm_max_lora_rank": fits[0] if fits else None}


def check_base_model(cfg: MergeConfig, states: list[AdapterState]) -> None:
    """``base_model`` (mergekit's key): every adapter must record that base model."""
    if cfg.base_model is None:
        return
    want = canonical_model_id(cfg.base_model)  # alias, cache folder and Hub id of one model are one base
    for path, state in zip(cfg.adapters, states):
        if state.base_model is not None and canonical_model_id(state.base_model) != want:
            raise LorikitError(f"{path}: base model {state.base_model!r} differs from base_model {cfg.base_model!r}")


def _default_model(states: list[AdapterState]) -> str:
    base = states[0].base_model
    if not base:
        raise LorikitError(f"{states[0].source}: adapter_config.json has no base_model_name_or_path; "
                           f"name the base model with --model")
    return base


def merge_meta(cfg: MergeConfig, states: list[AdapterState], names: list[str], merger: Merger) -> dict:
    parents = []
    for path, state, name, w in zip(cfg.adapters, states, names, merger.weights):
        ranks = sorted({m.rank for m in state.modules().values()})
        parents.append({"path": str(path), "name": name, "weight": w, "method": state.method,
                        "seed": state.seed, "rank": ranks[0] if len(ranks) == 1 else ranks,
                        "base_model": state.base_model})
    meta = {"lorikit_version": __version__, "method": f"merge:{cfg.method}", "base_model": states[0].base_model,
            "merge": {"method": cfg.method, "weights": merger.weights, "params": dict(merger.params.values),
                      "parents": parents}}
    if merger.method.paper:
        meta["merge"]["paper"] = reference(merger.method)
    if cfg.task is not None:
        meta["merge"]["task"] = cfg.task
    rank = None if cfg.into_model else merger.kind.recorded_rank(merger, cfg.rank)
    if rank is not None:
        meta["merge"]["rank"] = rank
    return meta


def write_emr(merger: Merger, names: list[str], folder: Path, meta: dict) -> None:
    """emr.safetensors (τ_uni per module, packed masks per task) + emr.json + lorikit.json."""
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    task_abs = masked_abs = 0
    for module in tqdm(merger.modules, desc="emr", unit="module", leave=False):
        part = merger.emr_module(module)
        tensors[tau_key(module)] = part.tau.contiguous()
        for i in range(len(names)):
            tensors[mask_key(module, i)] = pack_mask(part.masks[i])
        shapes[module] = list(part.tau.shape)
        task_abs, masked_abs = task_abs + part.task_abs, masked_abs + part.masked_abs
    scales = rescalers(task_abs, masked_abs)
    merger._emr_scales = scales
    save_file(tensors, str(folder / EMR_WEIGHTS), metadata={"format": "pt"})
    meta = {**meta, "output": "emr"}
    atomic_write_json(folder / EMR_META, {
        "format": 1, "tasks": names, "rescalers": dict(zip(names, scales)), "modules": shapes,
        "rank": merger.max_rank(), "adapter_config": adapter_config(merger.states), "lorikit": meta})
    atomic_write_json(folder / LORIKIT_META, meta)


def in_memory_model(model: torch.nn.Module, deltas: Iterator[tuple[str, torch.Tensor]] | Callable) -> torch.nn.Module:
    """Add merged updates (module → ΔW) to ``model``'s weights in place; returns ``model``."""
    named = dict(model.named_modules())
    items = deltas() if callable(deltas) else deltas
    with torch.no_grad():
        for module, delta in items:
            if module not in named:
                raise LorikitError(f"model has no module {module}")
            weight = named[module].weight
            weight.copy_((weight.float() + delta).to(weight.dtype))
    return model
