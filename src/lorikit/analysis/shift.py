"""Output shift: how far each adapter moves each target module's output on each task's data.

For adapter i, task t and target module m with base weight W, the inputs h that task t's
examples feed to m in the **base** model (real tokens only, padding excluded; prompt + response as
training sees them) give

    shift_m(i, t) = ‖ΔW_i H_t‖_F / ‖W H_t‖_F = √(Σ_h ‖s_i B_i (A_i h)‖²) / √(Σ_h ‖W h‖²)

(bias excluded; ΔW_i h is computed as s B (A h), never forming ΔW). Off-diagonal entries
(adapter i on task t ≠ i's data) are the interference OSRM minimises: after merging, adapter i
adds ΔW_i h to every other task's activations. The overall matrix is the mean of shift_m over
modules. Inputs come from the base model, so this is the first-order shift each adapter causes
in isolation (what a merge adds before later layers compound it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..adapters.state import AdapterState
from ..data import collate, load_examples, tokenize
from ..errors import LorikitError
from .compare import shared_modules


@dataclass
class OutputShift:
    adapters: list[str]
    tasks: list[str]
    modules: list[str]
    per_module: np.ndarray  # [adapters, tasks, modules]: ‖ΔW_i H_t‖ / ‖W H_t‖
    tokens: dict[str, int]  # real tokens seen per task

    @property
    def overall(self) -> np.ndarray:
        """[adapters, tasks]: mean over modules of the per-module shift."""
        return self.per_module.mean(-1)

    def to_json(self) -> dict:
        return {"adapters": self.adapters, "tasks": self.tasks, "tokens": self.tokens,
                "overall": [[round(float(x), 6) for x in row] for row in self.overall],
                "per_module": {m: [[round(float(x), 6) for x in row] for row in self.per_module[:, :, k]]
                               for k, m in enumerate(self.modules)}}


class _ShiftAccumulator:
    """Forward hooks on the base model's target modules summing ‖W h‖² and each ‖ΔW_i h‖²."""

    def __init__(self, model: torch.nn.Module, states: dict[str, AdapterState], modules: list[str]):
        self.model = model
        self.modules = modules
        self.token_mask: torch.Tensor | None = None
        self.factors: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]] = {}
        self.base_sq = torch.zeros(len(modules), dtype=torch.float64)
        self.delta_sq = torch.zeros(len(states), len(modules), dtype=torch.float64)
        self.handles = []
        for k, name in enumerate(modules):
            try:
                layer = model.get_submodule(name)
            except AttributeError as exc:
                raise LorikitError(f"module {name} of the adapters is not in the base model") from exc
            weight = getattr(layer, "weight", None)
            if weight is None or weight.dim() != 2:
                raise LorikitError(f"module {name} of the base model is not a linear layer")
            facs = []
            for a, state in states.items():
                lm = state.modules()[name]
                if tuple(weight.shape) != (lm.B.shape[0], lm.A.shape[1]):
                    raise LorikitError(f"adapter {a}: module {name} has ΔW {lm.B.shape[0]}×{lm.A.shape[1]} "
                                       f"but the base weight is {tuple(weight.shape)} (wrong --model?)")
                facs.append((lm.A.to(weight.device, torch.float32), lm.B.to(weight.device, torch.float32),
                             lm.scaling))
            self.factors[name] = facs
            self.handles.append(layer.register_forward_hook(self._hook(k, name)))

    def _hook(self, k: int, name: str):
        def hook(layer, inputs, output):
            h = inputs[0]
            h = h[self.token_mask] if self.token_mask is not None else h.reshape(-1, h.shape[-1])
            h = h.float()
            self.base_sq[k] += float((h @ layer.weight.float().T).double().pow(2).sum())
            for i, (A, B, s) in enumerate(self.factors[name]):
                self.delta_sq[i, k] += float(((h @ A.T) @ B.T).double().pow(2).sum()) * s * s
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def _trunk_without_head(model: torch.nn.Module, modules: list[str]) -> torch.nn.Module:
    """The decoder without the LM head when every target module lies inside it (saves the
    vocabulary projection, a fifth of a small model's compute), else the whole model."""
    prefix = getattr(model, "base_model_prefix", "")
    trunk = getattr(model, prefix, None) if prefix else None
    if isinstance(trunk, torch.nn.Module) and trunk is not model and all(m.startswith(prefix + ".") for m in modules):
        return trunk
    return model


@torch.no_grad()
def output_shift(model: torch.nn.Module, tokenizer, states: dict[str, AdapterState], data: dict[str, str],
                 samples: int = 16, batch_size: int = 4, max_length: int = 256, fmt: str = "auto",
                 n_builtin: int = 1000) -> OutputShift:
    """shift[i, t, m] for every adapter i, task t (``data``: task → --data spec) and shared module m."""
    if not states:
        raise LorikitError("output_shift: no adapters given")
    if not data:
        raise LorikitError("output_shift: no task data given")
    modules = shared_modules(states)
    device = next(model.parameters()).device
    model.eval()
    per_module = np.zeros((len(states), len(data), len(modules)))
    tokens: dict[str, int] = {}
    acc = _ShiftAccumulator(model, states, modules)
    forward = _trunk_without_head(model, modules)
    try:
        for t, (task, spec) in enumerate(data.items()):
            examples = load_examples(spec, fmt, limit=samples, n_builtin=max(n_builtin, samples))
            if not examples:
                raise LorikitError(f"--data {task}={spec}: no examples")
            tokenized = [tokenize(tokenizer, e, max_length) for e in examples]
            acc.base_sq.zero_()
            acc.delta_sq.zero_()
            n_tok = 0
            for start in tqdm(range(0, len(tokenized), batch_size), desc=f"output shift on {task}",
                              unit="batch", leave=False):
                batch = collate(tokenized[start:start + batch_size], tokenizer.pad_token_id)
                mask = batch["attention_mask"].to(device).bool()
                acc.token_mask = mask
                n_tok += int(mask.sum())
                forward(input_ids=batch["input_ids"].to(device), attention_mask=mask.long())
            tokens[task] = n_tok
            base = acc.base_sq.clamp(min=1e-300)
            per_module[:, t, :] = (acc.delta_sq / base).sqrt().numpy()
    finally:
        acc.close()
    if not all(math.isfinite(x) for x in per_module.flat):
        raise LorikitError("output shift is not finite (does an adapter hold inf/NaN weights?)")
    return OutputShift(list(states), list(data), modules, per_module, tokens)
