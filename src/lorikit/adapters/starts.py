"""Where an adapter starts: fresh, from a mask's dense parent, or from another adapter.

``build_adapter`` is the one call that builds the adapter a run trains, for every start:

- fresh: ``attach_adapter`` (which runs the method's own ``prepare``: LoRI's seeded, frozen A),
  then a data-driven init of A (OSRM) and ``--freeze A`` when asked, and the method's plan;
- LoRI-S, ``--method lori-s --mask M``: the LoRI-D adapter the mask was extracted from is the
  folder holding ``masks/`` (``<adapter>/masks/0.9_mask.pt``). Its config (rank, alpha, target
  modules) and its A are reused exactly — A read from the file, so a foreign adapter without
  ``lorikit.json`` works too — and B starts at 0; only the mask's entries are trained. The
  reference re-draws A for the LoRI-S run, so the mask no longer matches the projection it was
  extracted for (docs/methods.md#lori-s); an explicit ``--seed`` still re-draws A (with a warning).
- Continual, ``--from P [--mask M]``: A and B are loaded from adapter P; with a mask only its
  entries are trained (values start at P's B there), everything else stays bit-identical to P;
  without a mask all of B is trained (LoRI-D variant). A stays frozen in both — unless the method
  the run trains does not freeze A (``--method lora --continue-a``): then A and B both train on from
  P's values, plain LoRA continual fine-tuning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from .build import AdapterConfig, attach_adapter, load_peft, lora_layers
from .inits import AdapterInit, seeded_init_names
from .masks import adapter_of_mask, check_mask_matches, load_mask, parent_overlap
from .methods import AdapterMethod, find_method
from .seeded import freeze_seeded_a
from .state import AdapterState, load_adapter, resolve_adapter_path


def _load_peft_from(model, folder: Path, base_model_id: str):
    peft_model = load_peft(model, folder, trainable=True)
    peft_model.peft_config["default"].base_model_name_or_path = base_model_id
    peft_model.peft_config["default"].inference_mode = False
    return peft_model


def _shape_info(peft_model) -> dict:
    pc = peft_model.peft_config["default"]
    targets = pc.target_modules
    return {"rank": pc.r, "alpha": pc.lora_alpha,
            "target_modules": sorted(targets) if isinstance(targets, (set, list)) else targets}


def _a_info(source: AdapterState | None) -> dict:
    meta = (source.meta if source is not None else None) or {}
    method = find_method(meta.get("method"))
    if method is not None and method.seeded_a and meta.get("seed") is not None:
        return {"seed": meta["seed"], "a_init": meta.get("a_init", "kaiming")}
    return {"seed": None, "a_init": "from-file"}


def _synced(acfg: AdapterConfig, info: dict) -> AdapterConfig:
    """The AdapterConfig describing the adapter actually trained (recorded in lorikit.json)."""
    changes = {"method": info["method"], "rank": info["rank"], "alpha": info["alpha"]}
    if isinstance(info["target_modules"], list):
        changes["target_modules"] = list(info["target_modules"])
    if info["a_init"] in seeded_init_names():
        changes["a_init"] = info["a_init"]
    if info["seed"] is not None and acfg.seed is None:
        changes["seed"] = info["seed"]  # data order and run seed follow the adapter A came from
    return replace(acfg, **changes)


def _continual(bundle, method: AdapterMethod, acfg: AdapterConfig, mask: str | None, from_adapter: str):
    """``--from P [--mask M]``: P's A and B, then all of B (and A, for a method that trains A) or the
    mask's entries trained."""
    folder = resolve_adapter_path(from_adapter)
    source = load_adapter(folder)
    masks = load_mask(mask, source) if mask else None
    peft_model = _load_peft_from(bundle.model, folder, bundle.base_model_id)
    info = {"method": method.name, **_shape_info(peft_model), **_a_info(source),
            "parent": {"path": str(from_adapter), "method": source.method, "seed": source.seed}}
    if masks is None:
        for p in peft_model.parameters():
            p.requires_grad_(False)
        for _, layer in lora_layers(peft_model):
            layer.lora_B["default"].weight.requires_grad_(True)
            layer.lora_A["default"].weight.requires_grad_(not method.freezes_a)
        return peft_model, method.plan(peft_model, info=info), _synced(acfg, info)
    info["mask"] = {"file": str(mask)}
    info["overlap"] = parent_overlap(source, masks)
    plan = method.plan(peft_model, masks, info)
    plan.info["mask"].update(plan.mask_record())
    return peft_model, plan, _synced(acfg, info)


def _loose_mask(bundle, mask: str, acfg: AdapterConfig, method):
    """A mask outside any adapter's ``masks/``: A is drawn from an explicit ``--seed``."""
    if acfg.seed is None:
        raise UsageError(f"--mask {mask}: not inside an adapter's masks/ folder, so its A is unknown; "
                         "move it to <lori-d adapter>/masks/ or pass --seed to draw a new A")
    warnings.warn(f"--mask {mask}: no source adapter; A is drawn from --seed {acfg.seed}, "
                  "not the A the mask was extracted for", stacklevel=3)
    peft_model = attach_adapter(bundle.model, acfg, bundle.base_model_id, method=method)
    masks = load_mask(mask)
    shapes = {n: tuple(l.lora_B["default"].weight.shape) for n, l in lora_layers(peft_model)}
    check_mask_matches(masks, shapes, mask)
    info = {"method": method.name, **_shape_info(peft_model), "seed": acfg.seed, "a_init": acfg.a_init}
    return peft_model, masks, info


def _mask_of_adapter(bundle, mask: str, acfg: AdapterConfig, method, src_folder: Path):
    """The mask's own adapter: its config and A reused (re-drawn only for a different ``--seed``), B = 0."""
    source = load_adapter(src_folder)
    masks = load_mask(mask, source)
    peft_model = _load_peft_from(bundle.model, src_folder, bundle.base_model_id)
    info = {"method": method.name, **_shape_info(peft_model), **_a_info(source), "a_from": str(src_folder)}
    redraw = acfg.seed is not None and acfg.seed != info["seed"]
    if redraw:
        warnings.warn(f"--seed {acfg.seed} overrides the seed of {src_folder} ({info['seed']}): A is re-drawn "
                      "and differs from the A the mask was extracted for", stacklevel=3)
        a_init = acfg.a_init if info["a_init"] == "from-file" else info["a_init"]
        info.update(seed=acfg.seed, a_init=a_init)
        info.pop("a_from")
    with torch.no_grad():
        for _, layer in lora_layers(peft_model):
            layer.lora_B["default"].weight.zero_()
    if redraw:
        freeze_seeded_a(peft_model, acfg.seed, info["a_init"])
    return peft_model, masks, info


@dataclass
class Built:
    """The adapter a run trains: the PEFT model, the method's plan, the adapter config actually trained
    (a start from another adapter takes its shape, seed and A) and the data-driven init's record."""

    peft_model: Any
    plan: Any
    adapter: AdapterConfig
    init_record: dict | None = None


def build_adapter(bundle, method: AdapterMethod, acfg: AdapterConfig, mask: str | None = None,
                  from_adapter: str | None = None, init: tuple[AdapterInit, Any] | None = None,
                  freeze_a: bool = False, **attach: Any) -> Built:
    """The one call that builds the adapter a run trains, for every start: fresh, ``mask`` (from the
    mask's dense parent) or ``from_adapter`` (continual, optionally with ``mask``).

    ``method`` is the method the run trains (with ``from_adapter``, the continuing method). A fresh
    start takes ``attach`` (``attach_adapter``'s ``task_type``, ``modules_to_save``), a data-driven
    ``init`` (the init and its settings: A replaced, B = 0) and ``freeze_a``; the plan is made last,
    from what is then trainable. See the module docstring."""
    if from_adapter:
        return Built(*_continual(bundle, method, acfg, mask, from_adapter))
    if not mask:
        peft_model = attach_adapter(bundle.model, acfg, bundle.base_model_id, method=method, **attach)
        record = init[0].apply(peft_model, init[1], bundle.base_model_id) if init is not None else None
        if freeze_a:
            for _, layer in lora_layers(peft_model):
                layer.lora_A["default"].weight.requires_grad_(False)
        return Built(peft_model, method.plan(peft_model), acfg, record)
    if not Path(mask).is_file():  # before asking where it lives: a typo should say so
        raise UsageError(f"--mask {mask}: no such file")
    src_folder = adapter_of_mask(mask)
    if src_folder is None:
        peft_model, masks, info = _loose_mask(bundle, mask, acfg, method)
    else:
        peft_model, masks, info = _mask_of_adapter(bundle, mask, acfg, method, src_folder)
    info["mask"] = {"file": str(mask)}
    plan = method.plan(peft_model, masks, info)
    plan.info["mask"].update(plan.mask_record())
    return Built(peft_model, plan, _synced(acfg, info))
