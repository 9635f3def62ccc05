"""Put a merge into a live model for one evaluation, without writing files.

- ``ScaledAdapters`` — for methods whose merged update is Σ_i c_i · s_i B_i A_i exactly (``cat``:
  c_i = w_i; ``task-arithmetic``: c_i = λ w_i): the N adapters are loaded once into one stock
  PEFT model, all active, and an evaluation only sets each LoRA layer's scaling to c_i · s_i
  (PEFT's own per-module s_i, so rsLoRA and rank/alpha patterns count as PEFT counts them).
  Nothing is merged or copied per evaluation.
- ``MergedWeights`` — any other method: per evaluation ``lorikit.merge.Merger`` computes each
  module's merged ΔW in memory and the model's weight becomes W₀ + ΔW (W₀ kept aside).
"""

from __future__ import annotations

from typing import Callable

import torch
from peft.tuners.lora import LoraLayer

from ..adapters.build import load_peft
from ..adapters.state import AdapterState
from ..errors import LorikitError
from ..merge import Merger

Coefficients = Callable[[list[float], dict[str, float]], list[float]]

# Methods whose merge is linear in the weights: ΔW = Σ_i c_i s_i B_i A_i with these c_i.
LINEAR_IN_WEIGHTS: dict[str, Coefficients] = {
    "cat": lambda weights, knobs: list(weights),
    "task-arithmetic": lambda weights, knobs: [knobs.get("lam", 1.0) * w for w in weights],
}


class ScaledAdapters:
    """N PEFT adapters active together; ``apply`` rescales them (cat, task-arithmetic)."""

    def __init__(self, base_model: torch.nn.Module, adapters: list[str], coefficients: Coefficients):
        self.names = [f"task{i}" for i in range(len(adapters))]
        self.model = load_peft(base_model, adapters[0], adapter_name=self.names[0])
        for name, path in zip(self.names[1:], adapters[1:]):
            load_peft(self.model, path, adapter_name=name)
        self.model.base_model.set_adapter(self.names)
        self.model.requires_grad_(False)
        self.coefficients = coefficients
        self.layers = [(layer, {n: float(layer.scaling[n]) for n in self.names})
                       for layer in self.model.modules() if isinstance(layer, LoraLayer)]

    def apply(self, weights: list[float], knobs: dict[str, float]) -> torch.nn.Module:
        coefficients = self.coefficients(weights, knobs)
        for layer, scales in self.layers:
            for name, c in zip(self.names, coefficients):
                layer.scaling[name] = scales[name] * c
        return self.model


class MergedWeights:
    """The base model whose adapted weights are set to W₀ + ΔW(weights, knobs) per evaluation."""

    def __init__(self, model: torch.nn.Module, states: list[AdapterState], method: str,
                 params: Callable[[dict[str, float]], object], labels: list[str]):
        self.model = model
        self.states, self.method, self.params, self.labels = states, method, params, labels
        self.transpose = bool(states[0].config.get("fan_in_fan_out"))
        named = dict(model.named_modules())
        self.targets = {}
        for module in states[0].modules():
            if module not in named or not hasattr(named[module], "weight"):
                raise LorikitError(f"{labels[0]}: the base model has no module {module}")
            self.targets[module] = (named[module].weight, named[module].weight.detach().clone())

    @torch.no_grad()
    def apply(self, weights: list[float], knobs: dict[str, float]) -> torch.nn.Module:
        merger = Merger(self.states, self.method, weights, self.params(knobs), labels=self.labels)
        for module, (weight, original) in self.targets.items():
            delta = merger.delta(module).to(weight.device)
            delta = delta.T if self.transpose else delta
            weight.copy_((original.float() + delta).to(weight.dtype))
        return self.model
