"""Mixed-adapter batches for training: one frozen base GEMM over every row, each adapter on its rows.

PEFT routes rows to adapters with ``adapter_names=`` for inference only (it refuses in training
mode, and draws dropout from the global generator in set order). ``install_mixed`` replaces every
adapted Linear of a base model by a ``MixedLoraLinear`` that holds, per run, that run's PEFT LoRA
layer (the layer lives in the run's own PEFT model, so its plan, optimizer and saving are the solo
run's). A ``RowRoute`` says which rows of the stacked batch belong to which run:

    y[rows_k, :L_k] = (W x + s_k · B_k A_k dropout_k(x[rows_k, :L_k])).to(W x's dtype)

with ``L_k`` the run's own padded length, the rest of its rows (padding) left at ``W x``. This is
PEFT's LoRA forward, op for op, on the rows and length the run would have alone; dropout masks are
drawn from the run's own generator in that shape, so they equal the solo run's masks when the
generator starts in the state the solo run's global generator has (``train/multi.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..adapters.layers import lora_layers
from ..errors import UsageError


@dataclass
class RowRoute:
    """The current batch's rows per run: ``spans[k] = (start, stop, length)`` or None (run k absent).
    Present runs' spans are contiguous and in run order; ``generators[k]`` draws run k's dropout."""

    generators: list[torch.Generator]
    spans: list[tuple[int, int, int] | None] = field(default_factory=list)

    def set(self, spans: list[tuple[int, int, int] | None]) -> None:
        present = [s for s in spans if s is not None]
        if len(spans) != len(self.generators) or not present or present[0][0] != 0 or any(
                a[1] != b[0] for a, b in zip(present, present[1:])):
            raise ValueError(f"row route: spans {spans} do not tile the batch in run order")
        self.spans = list(spans)


def lora_delta(layer, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PEFT's LoRA term ``s · B A dropout(x)`` of ``layer``'s ``default`` adapter, dropout drawn from ``generator``."""
    lora_a, lora_b = layer.lora_A["default"], layer.lora_B["default"]
    dropout, scaling = layer.lora_dropout["default"], layer.scaling["default"]
    x = x.to(lora_a.weight.dtype).contiguous()
    if isinstance(dropout, nn.Dropout) and dropout.training and dropout.p > 0:
        # torch's CPU dropout, with the run's generator: empty_like(x).bernoulli_(1 - p) / (1 - p) * x
        noise = torch.empty_like(x).bernoulli_(1 - dropout.p, generator=generator)
        x = x * noise.div_(1 - dropout.p)
    return lora_b(lora_a(x)) * scaling


class MixedLoraLinear(nn.Module):
    """A frozen Linear plus, per run, that run's PEFT LoRA layer (None: the run does not adapt it)."""

    def __init__(self, base_layer: nn.Module, layers: list, route: RowRoute):
        super().__init__()
        self.base_layer = base_layer
        # not submodules: each belongs to its run's PEFT model (mode, device and saving follow that model)
        object.__setattr__(self, "run_layers", list(layers))
        object.__setattr__(self, "route", route)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        present = [(k, span) for k, span in enumerate(self.route.spans) if span is not None]
        # One split and one concatenation per layer: a slice of x or of the result per run would
        # each cost a zero-filled tensor of the whole batch in backward.
        pieces = x.split([stop - start for _, (start, stop, _) in present])
        deltas: list[torch.Tensor | None] = []
        for (k, (_, _, length)), piece in zip(present, pieces):
            layer = self.run_layers[k]
            delta = None if layer is None else lora_delta(layer, piece[:, :length], self.route.generators[k])
            deltas.append(delta if delta is None or length == piece.shape[1] else
                          torch.nn.functional.pad(delta, (0, 0, 0, piece.shape[1] - length)))
        if all(d is None for d in deltas):
            return result
        like = next(d for d in deltas if d is not None)
        full = torch.cat([d if d is not None else like.new_zeros(p.shape[:2] + like.shape[2:])
                          for d, p in zip(deltas, pieces)])
        # as PEFT: the sum in the adapter's dtype, cast back (adding 0 there leaves W x as it was)
        return (result + full).to(result.dtype)


def install_mixed(base_model: nn.Module, peft_models: list, generators: list[torch.Generator]) -> RowRoute:
    """Replace every Linear that any of ``peft_models`` adapts (each a PEFT model over its own copy of
    ``base_model``'s modules) by a ``MixedLoraLinear``; returns the route the batches set."""
    from peft.tuners.lora import Linear as LoraLinear

    route = RowRoute(list(generators))
    per_path: dict[str, list] = {}
    for k, peft_model in enumerate(peft_models):
        for path, layer in lora_layers(peft_model):
            if not isinstance(layer, LoraLinear) or getattr(layer, "lora_variant", {}).get("default") is not None:
                raise UsageError(f"train_many: run {k + 1} adapts {path} with a {type(layer).__name__} "
                                 "layer; mixed batches support plain LoRA Linear layers only")
            per_path.setdefault(path, [None] * len(peft_models))[k] = layer
    for path, layers in per_path.items():
        parent_path, _, child = path.rpartition(".")
        parent = base_model.get_submodule(parent_path)
        setattr(parent, child, MixedLoraLinear(getattr(parent, child), layers, route))
    return route
