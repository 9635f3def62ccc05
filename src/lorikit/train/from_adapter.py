"""Adapters that start from another adapter: LoRI-S (``--mask``) and continual learning (``--from``).

- LoRI-S, ``--method lori-s --mask M``: the LoRI-D adapter the mask was extracted from is the
  folder holding ``masks/`` (``<adapter>/masks/0.9_mask.pt``). Its config (rank, alpha, target
  modules) and its A are reused exactly — A read from the file, so a foreign adapter without
  ``lorikit.json`` works too — and B starts at 0; only the mask's entries are trained. The
  reference re-draws A for the LoRI-S run, so the mask no longer matches the projection it was
  extracted for (METHODS.md §3); an explicit ``--seed`` still re-draws A (with a warning).
- Continual, ``--from P [--mask M]``: A and B are loaded from adapter P; with a mask only its
  entries are trained (values start at P's B there), everything else stays bit-identical to P;
  without a mask all of B is trained (LoRI-D variant). A stays frozen in both.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..adapters.build import attach_adapter, lora_layers
from ..adapters.masks import adapter_of_mask, check_mask_matches, load_mask
from ..adapters.seeded import A_INITS, seeded_projection
from ..adapters.state import AdapterState, load_adapter, resolve_adapter_path
from ..errors import UsageError
from .plan import DensePlan
from .sparse import SparsePlan


class ContinualDensePlan(DensePlan):
    """LoRI-D continual variant: every B trained, A frozen; records the parent."""

    def __init__(self, peft_model, info: dict):
        super().__init__(peft_model)
        self.info = info

    def metadata(self) -> dict:
        return dict(self.info)


def _bitwise_nonzero(t: torch.Tensor) -> torch.Tensor:
    """Entries whose bits are not all zero (so −0.0 counts as stored, as it must for exact copies)."""
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(ints) != 0


def mask_overlap(parent: AdapterState, masks: dict[str, torch.Tensor]) -> dict:
    """How many of the parent's non-zero B entries the new mask would retrain."""
    parent_nz = both = kept = 0
    for name, m in parent.modules().items():
        nz = _bitwise_nonzero(m.B)
        parent_nz += int(nz.sum())
        kept += int(masks[name].sum())
        both += int((nz & masks[name]).sum())
    return {"parent_nonzero": parent_nz, "mask_kept": kept, "both": both,
            "fraction_of_mask": both / kept if kept else 0.0,
            "fraction_of_parent": both / parent_nz if parent_nz else 0.0}


def _load_peft_from(model, folder: Path, base_model_id: str):
    from ..adapters.build import load_peft

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
    if meta.get("method") in ("lori-d", "lori-s") and meta.get("seed") is not None:
        return {"seed": meta["seed"], "a_init": meta.get("a_init", "kaiming")}
    return {"seed": None, "a_init": "from-file"}


def _sync_config(acfg, info: dict) -> None:
    """Make the run's AdapterConfig describe the adapter actually trained (recorded in lorikit.json)."""
    acfg.method = info["method"]
    acfg.rank, acfg.alpha = info["rank"], info["alpha"]
    if isinstance(info["target_modules"], list):
        acfg.target_modules = list(info["target_modules"])
    if info["a_init"] in A_INITS:
        acfg.a_init = info["a_init"]
    if info["seed"] is not None and not acfg.seed_given:
        acfg.seed = info["seed"]  # data order and run seed follow the adapter A came from


def build_from_adapter(bundle, cfg):
    """(peft_model, plan) for ``cfg.mask`` and/or ``cfg.from_adapter``; see the module docstring."""
    acfg = cfg.adapter
    if cfg.from_adapter:
        folder = resolve_adapter_path(cfg.from_adapter)
        source = load_adapter(folder)
        masks = load_mask(cfg.mask, source) if cfg.mask else None
        peft_model = _load_peft_from(bundle.model, folder, bundle.base_model_id)
        info = {"method": "lori-s" if masks is not None else "lori-d", **_shape_info(peft_model),
                **_a_info(source),
                "parent": {"path": str(cfg.from_adapter), "method": source.method, "seed": source.seed}}
        if masks is None:
            for p in peft_model.parameters():
                p.requires_grad_(False)
            for _, layer in lora_layers(peft_model):
                layer.lora_B["default"].weight.requires_grad_(True)
            _sync_config(acfg, info)
            return peft_model, ContinualDensePlan(peft_model, info)
        info["mask"] = {"file": str(cfg.mask)}
        info["overlap"] = mask_overlap(source, masks)
        _sync_config(acfg, info)
        plan = SparsePlan(peft_model, masks)
        info["mask"].update(kept=plan.kept, total=plan.total, kept_fraction=plan.kept / plan.total)
        plan.info = info
        return peft_model, plan

    # Fresh LoRI-S.
    if not Path(cfg.mask).is_file():  # before asking where it lives: a typo should say so
        raise UsageError(f"--mask {cfg.mask}: no such file")
    src_folder = adapter_of_mask(cfg.mask)
    if src_folder is None:
        if not acfg.seed_given:
            raise UsageError(f"--mask {cfg.mask}: not inside an adapter's masks/ folder, so its A is unknown; "
                             "move it to <lori-d adapter>/masks/ or pass --seed to draw a new A")
        warnings.warn(f"--mask {cfg.mask}: no source adapter; A is drawn from --seed {acfg.seed}, "
                      "not the A the mask was extracted for", stacklevel=2)
        peft_model = attach_adapter(bundle.model, acfg, bundle.base_model_id)
        masks = load_mask(cfg.mask)
        shapes = {n: tuple(l.lora_B["default"].weight.shape) for n, l in lora_layers(peft_model)}
        check_mask_matches(masks, shapes, cfg.mask)
        info = {"method": "lori-s", **_shape_info(peft_model), "seed": acfg.seed, "a_init": acfg.a_init}
    else:
        source = load_adapter(src_folder)
        masks = load_mask(cfg.mask, source)
        peft_model = _load_peft_from(bundle.model, src_folder, bundle.base_model_id)
        info = {"method": "lori-s", **_shape_info(peft_model), **_a_info(source)}
        info["a_from"] = str(src_folder)
        redraw = acfg.seed_given and acfg.seed != info["seed"]
        if redraw:
            warnings.warn(f"--seed {acfg.seed} overrides the seed of {src_folder} ({info['seed']}): A is re-drawn "
                          "and differs from the A the mask was extracted for", stacklevel=2)
            a_init = acfg.a_init if info["a_init"] == "from-file" else info["a_init"]
            info.update(seed=acfg.seed, a_init=a_init)
            info.pop("a_from")
        with torch.no_grad():
            for name, layer in lora_layers(peft_model):
                layer.lora_B["default"].weight.zero_()
                if redraw:
                    a = layer.lora_A["default"].weight
                    a.copy_(seeded_projection(acfg.seed, name, a.shape[0], a.shape[1], info["a_init"]).to(a.dtype))
    _sync_config(acfg, info)
    plan = SparsePlan(peft_model, masks)
    info["mask"] = {"file": str(cfg.mask), "kept": plan.kept, "total": plan.total,
                    "kept_fraction": plan.kept / plan.total}
    plan.info = info
    return peft_model, plan
