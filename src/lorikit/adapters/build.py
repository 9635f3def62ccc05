"""Attach a LoRA / LoRI adapter to a base model through PEFT, and load saved adapters.

- ``lora``: standard PEFT LoRA (A kaiming-uniform, B = 0, both trained); the global RNG is seeded
  from ``seed`` first so the run is reproducible.
- ``lori-d``: same PEFT layers, but every A is replaced by ``seeded_projection(seed, module)``
  and frozen (``requires_grad=False``: no gradient, no optimizer state). ΔW = s · B A with only
  B trained (METHODS.md §1).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LorikitError, UsageError
from .seeded import A_INITS, seeded_projection
from .state import PEFT_PREFIX, resolve_adapter_path

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METHODS = ("lora", "lori-d", "lori-s")
logger = logging.getLogger(__name__)


@dataclass
class AdapterConfig:
    """What adapter to put on the base model."""

    method: str = field(default="lora", metadata={
        "help": "lora (A and B trained), lori-d (A frozen seeded random projection, B trained), "
                "lori-s (LoRI-D's A, only masked entries of B trained; needs --mask)", "choices": METHODS})
    rank: int = field(default=32, metadata={"help": "LoRA rank r"})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; scaling s = alpha / r (default 2 × rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout on the adapter input"})
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS), metadata={
        "help": "module names to adapt (suffixes, as PEFT matches them)"})
    a_init: str = field(default="kaiming", metadata={
        "help": "LoRI's frozen A: kaiming (U(±1/√in), the reference) or gaussian (N(0, 1/r))",
        "choices": A_INITS})
    seed: int | None = field(default=None, metadata={
        "help": "seed of A (LoRI: A = f(seed, module)) and of the run; when not given, training derives it "
                "from the data (so different tasks get different A), LoRI-S and continual runs take the seed "
                "of the adapter their A comes from, and other uses take 0"})

    def __post_init__(self):
        # LoRI-S takes the seed of the adapter its mask came from unless one is given explicitly.
        self.seed_given = self.seed is not None
        if self.seed is None:
            self.seed = 0
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r}: unknown (choose from {', '.join(METHODS)})")
        if self.rank <= 0:
            raise UsageError(f"--rank {self.rank}: must be a positive integer")
        if self.alpha is None:
            self.alpha = 2.0 * self.rank
        if self.a_init not in A_INITS:
            raise UsageError(f"--a-init {self.a_init!r}: unknown (choose from {', '.join(A_INITS)})")
        if not self.target_modules:
            raise UsageError("--target-modules: give at least one module name")

    @property
    def freezes_a(self) -> bool:
        return self.method in ("lori-d", "lori-s")


def check_seed_chosen(cfg: AdapterConfig) -> None:
    """LoRI's A must differ between tasks: refuse the placeholder seed 0 nobody chose.

    ``seed_derived`` is set by whoever derived the seed from the task (``TrainConfig`` from its data)."""
    if cfg.seed_given or getattr(cfg, "seed_derived", False):
        return
    if cfg.freezes_a:
        raise UsageError(f"AdapterConfig.seed: {cfg.method} needs a per-task seed (A = f(seed, module); one shared "
                         "default would give every task the same A): pass seed=INT, e.g. "
                         "lorikit.integrations.task_seed('my-task')")
    logger.warning("AdapterConfig.seed not given: LoRA's initial A is drawn with seed 0")


def lora_layers(peft_model, adapter_name: str = "default"):
    """(module path in the base model, PEFT LoRA layer) for every adapted module."""
    from peft.tuners.lora import LoraLayer

    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            yield (name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name), module


def attach_adapter(model: torch.nn.Module, cfg: AdapterConfig, base_model_id: str | None = None,
                   task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None):
    """Wrap ``model`` in a PEFT model carrying a fresh adapter described by ``cfg``."""
    from peft import LoraConfig, get_peft_model

    check_seed_chosen(cfg)
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.target_modules if t not in present]
    if missing:
        raise UsageError(f"--target-modules: {missing[0]!r} is not a module of this model")
    lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type=task_type,
                      modules_to_save=modules_to_save)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        peft_model = get_peft_model(model, lcfg)
    if base_model_id:
        peft_model.peft_config["default"].base_model_name_or_path = base_model_id
    if cfg.freezes_a:
        for name, layer in lora_layers(peft_model):
            weight = layer.lora_A["default"].weight
            A = seeded_projection(cfg.seed, name, weight.shape[0], weight.shape[1], cfg.a_init)
            with torch.no_grad():
                weight.copy_(A.to(weight.dtype))
            weight.requires_grad_(False)
    return peft_model


def load_peft(model: torch.nn.Module, adapter: str | os.PathLike, trainable: bool = False):
    """Stock ``PeftModel.from_pretrained`` on a local folder or Hub id."""
    from peft import PeftModel

    path = resolve_adapter_path(adapter)
    try:
        return PeftModel.from_pretrained(model, str(Path(path)), is_trainable=trainable)
    except Exception as exc:
        # Name what is wrong: lorikit's own reader says so for a missing/corrupt file or config;
        # otherwise it is an adapter of another model (PEFT's size-mismatch paragraph → its key line).
        from .state import load_adapter

        load_adapter(path)
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        detail = next((ln for ln in lines if "size mismatch" in ln or "not found in the base model" in ln), lines[0])
        raise LorikitError(f"{path}: does not fit this base model ({detail[:300]})") from exc
