"""Attach a fresh adapter of any registered method to a base model through PEFT; load saved adapters.

PEFT builds the LoRA layers (A kaiming-uniform, B = 0) with the global RNG seeded from the
adapter seed, so every run is reproducible; the method (``adapters/methods/``) then adjusts them —
LoRI replaces every A by its seeded projection and freezes it (docs/methods.md#lori-d).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LorikitError, UsageError
from ..utils.validate import check_number, check_seed
from .inits import get_seeded_init, seeded_init_names
from .layers import lora_layers
from .methods import get_method, method_help, method_names
from .patterns import pattern_value
from .state import load_adapter, resolve_adapter_path

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METHODS = method_names()
logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TARGETS", "METHODS", "AdapterConfig", "attach_adapter", "check_seed_chosen", "load_peft",
           "lora_layers"]


@dataclass
class AdapterConfig:
    """What adapter to put on the base model."""

    method: str = field(default="lora", metadata={"help": method_help(), "choices": METHODS})
    rank: int = field(default=32, metadata={"help": "LoRA rank r"})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; scaling s = alpha / r (default 2 × rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout on the adapter input"})
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS), metadata={
        "help": "module names to adapt (suffixes, as PEFT matches them)"})
    a_init: str = field(default="kaiming", metadata={
        "help": "LoRI's frozen A: kaiming (U(±1/√in), the reference) or gaussian (N(0, 1/r))",
        "choices": seeded_init_names()})
    seed: int | None = field(default=None, metadata={
        "help": "seed of A (LoRI: A = f(seed, module)) and of the run; when not given, training derives it "
                "from the data (so different tasks get different A), LoRI-S and continual runs take the seed "
                "of the adapter their A comes from, and other uses take 0"})

    def __post_init__(self):
        get_method(self.method)
        if self.rank <= 0:
            raise UsageError(f"--rank {self.rank}: must be a positive integer")
        if self.alpha is None:
            self.alpha = 2.0 * self.rank
        check_number("--alpha", self.alpha, low=0, low_open=True)  # α = 0: ΔW = 0, nothing to learn
        check_number("--dropout", self.dropout, low=0, high=1, high_open=True)
        if self.seed is not None:
            check_seed("--seed", self.seed)
        get_seeded_init(self.a_init)
        if not self.target_modules:
            raise UsageError("--target-modules: give at least one module name")

    @property
    def run_seed(self) -> int:
        """The seed actually used: ``seed``, else the one derived from the task (``derived_seed``,
        set by ``TrainConfig`` from its data), else 0 (training resolves it first)."""
        if self.seed is not None:
            return self.seed
        derived = getattr(self, "derived_seed", None)
        return 0 if derived is None else derived

    @property
    def freezes_a(self) -> bool:
        return get_method(self.method).freezes_a

    @property
    def seed_given(self) -> bool:
        """Whether a seed was given (or resolved by training, which passes it explicitly)."""
        return self.seed is not None

    @property
    def seed_derived(self) -> bool:
        """Whether a per-task seed was derived (``derived_seed``: not a field, never written to disk)."""
        return getattr(self, "derived_seed", None) is not None


def check_seed_chosen(cfg: AdapterConfig) -> None:
    """LoRI's A must differ between tasks: refuse to draw it from the placeholder seed 0 nobody chose.

    ``derived_seed`` is set by whoever derived the seed from the task: ``TrainConfig`` sets it to
    ``resolved_seed()`` (a function of the data) without rewriting ``seed``."""
    if cfg.seed_given or cfg.seed_derived:
        return
    if cfg.freezes_a:
        raise UsageError(f"AdapterConfig.seed: {cfg.method} needs a per-task seed (A = f(seed, module); one shared "
                         "default would give every task the same A): pass seed=INT, e.g. "
                         "lorikit.integrations.task_seed('my-task')")
    logger.warning("AdapterConfig.seed not given: LoRA's initial A is drawn with seed 0")


def attach_adapter(model: torch.nn.Module, cfg: AdapterConfig, base_model_id: str | None = None,
                   task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None):
    """Wrap ``model`` in a PEFT model carrying a fresh adapter described by ``cfg``."""
    from peft import LoraConfig, get_peft_model  # heavy: imported when used, not by the CLI's parser

    check_seed_chosen(cfg)
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.target_modules if t not in present]
    if missing:
        raise UsageError(f"--target-modules: {missing[0]!r} is not a module of this model")
    lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type=task_type,
                      modules_to_save=modules_to_save)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run_seed)
        peft_model = get_peft_model(model, lcfg)
    if base_model_id:
        peft_model.peft_config["default"].base_model_name_or_path = base_model_id
    get_method(cfg.method).prepare(peft_model, cfg)
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


def load_peft(model: torch.nn.Module, adapter: str | os.PathLike, trainable: bool = False):
    """Stock ``PeftModel.from_pretrained`` on a local folder or Hub id."""
    from peft import PeftModel

    path = resolve_adapter_path(adapter)
    state = load_adapter(path)  # refuse what PEFT would load wrongly: stray modules, wrong r, NaN/inf weights
    try:
        return PeftModel.from_pretrained(model, str(Path(path)), is_trainable=trainable,
                                         config=explicit_peft_config(path, state))
    except Exception as exc:
        # Name what is wrong: lorikit's own reader says so for a missing/corrupt file or config;
        # otherwise it is an adapter of another model (PEFT's size-mismatch paragraph → its key line).
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        detail = next((ln for ln in lines if "size mismatch" in ln or "not found in the base model" in ln), lines[0])
        raise LorikitError(f"{path}: does not fit this base model ({detail[:300]})") from exc
