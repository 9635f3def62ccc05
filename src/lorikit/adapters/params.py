"""Exact trainable-parameter counts of every adapter method for a model config, without weights.

The model is instantiated on the ``meta`` device (shapes only, no memory) and wrapped by PEFT with
the same ``LoraConfig`` lorikit trains with, so module matching is PEFT's own. Per adapted
module with A (r × in) and B (out × r):

the method's ``trainable_count`` (``adapters/methods/``) gives the count, e.g. LoRA Σ r · (in + out),
LoRI-D Σ r · out, LoRI-S k = int((1 − sparsity) · Σ r · out) with a global mask (a global top-k can
keep a few more entries when |B| has ties at the threshold; this is the count before ties).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LorikitError, UsageError
from ..models.loading import SMOLLM2, SMOLLM2_HUB_ID, TINY, smollm2_config, tiny_llama_config
from .config import ALL_LINEAR, DEFAULT_TARGETS
from .masks import SCOPES, check_sparsity
from .methods import get_method


@dataclass
class ParamCount:
    method: str
    rank: int
    trainable: int
    lora_a: int  # entries of all A
    lora_b: int  # entries of all B
    base: int  # parameters of the base model
    modules: int
    sparsity: float | None = None
    scope: str | None = None

    @property
    def fraction_of_lora(self) -> float:
        return self.trainable / (self.lora_a + self.lora_b)

    @property
    def fraction_of_base(self) -> float:
        return self.trainable / self.base if self.base else 0.0


def resolve_config(model):
    """A transformers ``PretrainedConfig`` from a config object, alias, folder, config.json or Hub id."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(model, PretrainedConfig):
        return model
    name = str(model)
    if name == TINY:
        return tiny_llama_config()
    if name in (SMOLLM2, SMOLLM2_HUB_ID):  # the embedded model's config, without de-quantising its weights
        return smollm2_config()
    p = Path(name)
    try:
        if p.is_file():
            data = json.loads(p.read_text())
            if "model_type" not in data:
                raise UsageError(f"--model {p}: config.json has no model_type")
            return AutoConfig.for_model(**data)
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise LorikitError(f"--model {name}: cannot read a model config ({str(exc).splitlines()[0][:200]})") from exc


def count_parameters(model, rank: int = 32, method: str = "lori-s", sparsity: float = 0.9,
                     scope: str = "global", target_modules: list[str] | None = None) -> ParamCount:
    """Count trainable parameters of ``method`` at ``rank`` on ``model`` (config or name); no weights load."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    strategy = get_method(method)
    if rank <= 0:
        raise UsageError(f"--rank {rank}: must be a positive integer")
    if scope not in SCOPES:
        raise UsageError(f"--scope {scope!r}: unknown (choose from {', '.join(SCOPES)})")
    if strategy.uses_mask:
        check_sparsity(sparsity)
    config = resolve_config(model)
    targets = list(target_modules or DEFAULT_TARGETS)
    with torch.device("meta"):
        try:
            base = AutoModelForCausalLM.from_config(config)
        except ValueError as exc:
            raise LorikitError(f"--model: {str(exc).splitlines()[0][:200]}") from exc
        n_base = sum(p.numel() for p in base.parameters())
        present = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
        missing = [] if targets == [ALL_LINEAR] else [t for t in targets if t not in present]
        if missing:
            raise UsageError(f"--target-modules: {missing[0]!r} is not a module of this model")
        with warnings.catch_warnings():  # PEFT probes a deprecated transformers attribute
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=(
                ALL_LINEAR if targets == [ALL_LINEAR] else targets)))
    a_sizes, b_sizes = [], []
    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            a_sizes.append(module.lora_A["default"].weight.numel())
            b_sizes.append(module.lora_B["default"].weight.numel())
    n_a, n_b = sum(a_sizes), sum(b_sizes)
    trainable = strategy.trainable_count(a_sizes, b_sizes, sparsity, scope)
    return ParamCount(method=method, rank=rank, trainable=trainable, lora_a=n_a, lora_b=n_b, base=n_base,
                      modules=len(b_sizes), sparsity=sparsity if strategy.uses_mask else None,
                      scope=scope if strategy.uses_mask else None)
