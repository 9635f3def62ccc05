"""Attach a fresh adapter of any registered method to a base model through PEFT; load saved adapters.

PEFT builds the LoRA layers (A kaiming-uniform, B = 0) with the global RNG seeded from the
adapter seed, so every run is reproducible; the method (``adapters/methods/``) then adjusts them —
LoRI replaces every A by its seeded projection and freezes it (docs/methods.md#lori-d).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import LorikitError, UsageError
from .config import ALL_LINEAR, DEFAULT_TARGETS, METHODS, AdapterConfig, check_seed_chosen
from .layers import lora_layers
from .methods import AdapterMethod, get_method
from .patterns import pattern_value
from .state import load_adapter, resolve_adapter_path

__all__ = ["DEFAULT_TARGETS", "METHODS", "AdapterConfig", "attach_adapter", "check_seed_chosen", "load_peft",
           "lora_layers"]


def attach_adapter(model: torch.nn.Module, cfg: AdapterConfig, base_model_id: str | None = None,
                   task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None,
                   method: AdapterMethod | None = None):
    """Wrap ``model`` in a PEFT model carrying a fresh adapter described by ``cfg``. ``method``: the
    method object of ``cfg.method`` when the caller resolved it already (``build_adapter``)."""
    from peft import LoraConfig, get_peft_model  # heavy: imported when used, not by the CLI's parser

    check_seed_chosen(cfg)
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [] if cfg.peft_target_modules == ALL_LINEAR else [t for t in cfg.target_modules if t not in present]
    if missing:
        raise UsageError(f"--target-modules: {missing[0]!r} is not a module of this model")
    lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=cfg.peft_target_modules, bias="none", task_type=task_type,
                      modules_to_save=modules_to_save)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run_seed.used)
        peft_model = get_peft_model(model, lcfg)
    if base_model_id:
        peft_model.peft_config["default"].base_model_name_or_path = base_model_id
    (method or get_method(cfg.method)).prepare(peft_model, cfg)
    return peft_model


def explicit_peft_config(path, state):
    """The adapter's PEFT config with its regexes replaced by the module names they matched (PEFT
    matches with ``re``, without a time limit; lorikit already matched them with one)."""
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(str(path))
    modules = state.modules()
    if isinstance(config.target_modules, str) and config.target_modules != "all-linear":
        config.target_modules = set(modules)
    for field, default in (("rank_pattern", config.r), ("alpha_pattern", config.lora_alpha)):
        patterns = getattr(config, field, None)
        if patterns:
            values = {n: pattern_value(patterns, n, default, str(path), field) for n in modules}
            setattr(config, field, {re.escape(n): v for n, v in values.items() if v != default})
    return config


def load_peft(model: torch.nn.Module, adapter: str | os.PathLike, trainable: bool = False,
              adapter_name: str = "default"):
    """Stock ``PeftModel.from_pretrained`` on a local folder or Hub id, as ``adapter_name``; when
    ``model`` is a ``PeftModel`` already, the adapter is added to it (PEFT's ``add_adapter`` and
    ``load_adapter``), so one model carries several. Every adapter load goes through here: one
    reader before PEFT's, one translation of PEFT's errors."""
    from peft import PeftModel

    path = resolve_adapter_path(adapter)
    state = load_adapter(path)  # refuse what PEFT would load wrongly: stray modules, wrong r, NaN/inf weights
    try:
        config = explicit_peft_config(path, state)
        if isinstance(model, PeftModel):
            config.inference_mode = not trainable
            model.add_adapter(adapter_name, config)
            model.load_adapter(str(path), adapter_name=adapter_name, is_trainable=trainable)
            return model
        return PeftModel.from_pretrained(model, str(Path(path)), adapter_name=adapter_name, is_trainable=trainable,
                                         config=config)
    except Exception as exc:
        # Name what is wrong: lorikit's own reader says so for a missing/corrupt file or config;
        # otherwise it is an adapter of another model (PEFT's size-mismatch paragraph → its key line).
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        detail = next((ln for ln in lines if "size mismatch" in ln or "not found in the base model" in ln), lines[0])
        raise LorikitError(f"{path}: does not fit this base model ({detail[:300]})") from exc
