"""LoRI as a PEFT model for any training script (Hugging Face ``Trainer``, TRL, your own loop).

LoRI (Zhang et al., "LoRI: Reducing Cross-Task Interference in Multi-Task Low-Rank Adaptation",
2025) is LoRA with ΔW = s · B A where

- A (r × in) is a frozen random projection, here ``A = f(seed, module)`` (regenerable);
- B (out × r) is trained: dense (**LoRI-D**), or only at the entries of a mask extracted from a
  trained LoRI-D adapter (**LoRI-S**; the other entries stay exactly 0).

``get_lori_model`` returns an ordinary ``peft.PeftModel`` (causal LM, sequence classification or
any task type PEFT supports): ``save_pretrained`` writes a stock LoRA adapter that
``PeftModel.from_pretrained`` loads without lorikit. The seed is never a silent shared default:
give ``seed=`` or ``task=`` (seed derived from the name); for LoRI-S from a mask file inside a
LoRI-D adapter's ``masks/`` folder, that adapter's seed and A are reused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..adapters.build import lora_layers
from ..adapters.card import write_model_card
from ..adapters.masks import MaskResult, adapter_of_mask, load_mask
from ..adapters.methods import METHODS, regenerable_a
from ..adapters.seeded import A_INITS, freeze_seeded_a
from ..adapters.state import LORIKIT_META, load_adapter
from ..errors import UsageError
from ..models.loading import WEIGHTS_NOTE_ATTR
from ..utils.atomic import atomic_write_json
from .seeds import resolve_seed
from .stock_sparse import StockSparsePlan

logger = logging.getLogger(__name__)

LORI_METHODS = tuple(m.name for m in METHODS.values() if m.seeded_a)  # A is the seeded projection
INFO_ATTR = "lorikit_info"  # dict set on the PeftModel: becomes lorikit.json
PLAN_ATTR = "lorikit_plan"  # the StockSparsePlan of a LoRI-S model


def _mask_and_source(mask) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(module → bool mask, {file, seed, a_init} of the LoRI-D adapter it came from when known)."""
    if isinstance(mask, MaskResult):
        return mask.masks, {"sparsity": mask.sparsity}
    if isinstance(mask, dict):
        if not mask or not all(isinstance(v, torch.Tensor) for v in mask.values()):
            raise UsageError("mask: a non-empty dict of module path -> bool tensor [out, r]")
        return {k: v.to(torch.bool) for k, v in mask.items()}, {}
    if isinstance(mask, (str, os.PathLike)):
        source: dict[str, Any] = {"file": str(mask)}
        folder = adapter_of_mask(mask) if Path(mask).is_file() else None
        state = load_adapter(folder) if folder is not None else None
        masks = load_mask(mask, state)
        meta = (state.meta if state is not None else None) or {}
        if (regenerated := regenerable_a(meta)) is not None:
            source.update(seed=regenerated[0], a_init=regenerated[1], a_from=str(folder))
        return masks, source
    raise UsageError(f"mask: expected a mask file path, a dict of bool tensors or a MaskResult, "
                     f"got {type(mask).__name__}")


def _check_lora_config(lora_config) -> None:
    from peft import LoraConfig

    if not isinstance(lora_config, LoraConfig):
        raise UsageError(f"lora_config: expected a peft.LoraConfig, got {type(lora_config).__name__}")
    if getattr(lora_config, "use_dora", False):
        raise UsageError("lora_config.use_dora: LoRI is plain LoRA with a frozen A; DoRA does not apply")
    init = getattr(lora_config, "init_lora_weights", True)
    if init not in (True, False, "gaussian"):
        raise UsageError(f"lora_config.init_lora_weights={init!r}: changes the base weights; LoRI needs "
                         "True (A is replaced by the seeded projection, B starts at 0)")


def get_lori_model(model: torch.nn.Module, lora_config, method: str = "lori-d", seed: int | None = None,
                   mask=None, *, task: str | None = None, a_init: str = "kaiming",
                   adapter_name: str = "default"):
    """Wrap ``model`` in a ``PeftModel`` carrying a LoRI adapter.

    Args:
        model: a Transformers model (causal LM, sequence classifier, ...), not yet a PeftModel.
        lora_config: a ``peft.LoraConfig`` (r, lora_alpha, target_modules, task_type, ...).
        method: ``"lori-d"`` (dense B) or ``"lori-s"`` (only ``mask``'s entries of B trained).
        seed: seed of A (A = f(seed, module)). Required unless ``task`` is given or the LoRI-S mask
            lies in a LoRI-D adapter's ``masks/`` folder (then that adapter's seed, i.e. its A).
        mask: LoRI-S only: a mask file (reference format), ``{module: bool [out, r]}`` or a
            ``MaskResult`` from ``extract_masks``.
        task: task name; without ``seed`` the seed is derived from it (different tasks, different A).
        a_init: ``kaiming`` (U(±1/√in), the reference) or ``gaussian`` (N(0, 1/r)).
    """
    from peft import PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise UsageError("model: already a PeftModel; pass the base model (get_lori_model adds the adapter)")
    if method not in LORI_METHODS:
        raise UsageError(f"method={method!r}: unknown (choose from {', '.join(LORI_METHODS)})")
    if a_init not in A_INITS:
        raise UsageError(f"a_init={a_init!r}: unknown (choose from {', '.join(A_INITS)})")
    _check_lora_config(lora_config)
    if (mask is None) == METHODS[method].uses_mask:
        mask_methods = " / ".join(n for n in LORI_METHODS if METHODS[n].uses_mask)
        raise UsageError(f"method={method!r} needs mask=..." if mask is None else
                         f"mask: only with method={mask_methods!r} ({METHODS[method].title} trains all of B)")
    masks, source = _mask_and_source(mask) if mask is not None else (None, {})
    if seed is None and task is None and "seed" in source:
        seed, a_init = source["seed"], source["a_init"]
    seed = resolve_seed(seed, task)
    if hasattr(model, "add_model_tags"):  # PEFT's and Trainer's / TRL's model cards carry the model's tags
        model.add_model_tags(["lorikit", method])
    peft_model = get_peft_model(model, lora_config, adapter_name=adapter_name)
    freeze_seeded_a(peft_model, seed, a_init, adapter_name)
    with torch.no_grad():  # init_lora_weights=False draws B at random; LoRI's B starts at 0
        for _, layer in lora_layers(peft_model, adapter_name):
            layer.lora_B[adapter_name].weight.zero_()
    info = _describe(peft_model, lora_config, method, seed, a_init, task, adapter_name)
    if getattr(model, WEIGHTS_NOTE_ATTR, None):
        info["base_weights"] = getattr(model, WEIGHTS_NOTE_ATTR)
    if masks is not None:
        plan = StockSparsePlan(peft_model, masks, adapter_name)
        for pname, param in peft_model.named_parameters():  # a classifier head stays trainable
            if "modules_to_save" in pname:
                param.requires_grad_(True)
        setattr(peft_model, PLAN_ATTR, plan)
        info["mask"] = {**source, "kept": plan.kept, "total": plan.total, "kept_fraction": plan.kept / plan.total}
    setattr(peft_model, INFO_ATTR, info)
    logger.info("LoRI %s: seed %d, %d modules", method, seed, len(list(lora_layers(peft_model, adapter_name))))
    return peft_model


def _describe(peft_model, lora_config, method, seed, a_init, task, adapter_name) -> dict[str, Any]:
    targets = lora_config.target_modules
    targets = sorted(targets) if isinstance(targets, (set, list, tuple)) else targets
    return {"lorikit_version": __version__, "method": method, "seed": seed, "a_init": a_init,
            "task": task, "base_model": peft_model.peft_config[adapter_name].base_model_name_or_path,
            "rank": lora_config.r, "alpha": lora_config.lora_alpha, "target_modules": targets,
            "task_type": str(lora_config.task_type) if lora_config.task_type else None,
            "built_with": "lorikit.integrations.get_lori_model"}


def lori_info(peft_model) -> dict[str, Any] | None:
    """The lorikit.json record of a model built by ``get_lori_model`` (None for other models)."""
    info = getattr(peft_model, INFO_ATTR, None)
    return dict(info) if info is not None else None


def lori_plan(peft_model) -> StockSparsePlan | None:
    return getattr(peft_model, PLAN_ATTR, None)


def finalize_lori(peft_model) -> None:
    """Bake LoRI-S's sparse values into plain PEFT ``lora_B`` weights (for merging or export).

    Saving does not need this (every save is already a stock adapter); after it the model no
    longer trains sparsely."""
    plan = lori_plan(peft_model)
    if plan is not None:
        plan.finalize()
        setattr(peft_model, PLAN_ATTR, None)


def write_lori_metadata(folder: str | os.PathLike, peft_model, extra: dict[str, Any] | None = None) -> Path | None:
    """Write ``lorikit.json`` for ``peft_model`` into ``folder`` (nothing for models lorikit did not build)."""
    info = lori_info(peft_model)
    if info is None:
        return None
    info.update(extra or {})
    path = Path(folder) / LORIKIT_META
    atomic_write_json(path, info)
    write_model_card(folder, json.loads(path.read_text()))
    return path


def save_lori_adapter(peft_model, out: str | os.PathLike, extra: dict[str, Any] | None = None, **kwargs) -> Path:
    """``peft_model.save_pretrained(out)`` plus ``lorikit.json``; returns ``out``."""
    plan = lori_plan(peft_model)
    if plan is not None:
        plan.check()
    peft_model.save_pretrained(str(out), **kwargs)
    write_lori_metadata(out, peft_model, extra)
    return Path(out)
