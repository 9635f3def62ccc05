"""The contract every adapter method keeps, for every start it supports (PEFT's test_custom_models idea):
method × start (fresh, from a mask's dense parent, continual from another adapter), each checked for

- A frozen exactly when the method says so (``freezes_a``);
- the trainable parameters of the built plan equal ``trainable_count`` from the A and B sizes (what
  ``lorikit params`` reports before anything is loaded);
- the save → load round trip: the adapter written after a step loads in stock PEFT with the very
  tensors lorikit reads, and records the method; a method with a seeded A saves the A it started from.

A new method is checked by being registered: the parameters come from the registry and its flags.
"""

from __future__ import annotations

import json

import pytest
import torch

from lorikit.adapters.build import AdapterConfig, load_peft, lora_layers
from lorikit.adapters.masks import write_masks
from lorikit.adapters.methods import METHODS
from lorikit.adapters.seeded import seeded_projection
from lorikit.adapters.state import load_adapter
from lorikit.errors import UsageError
from lorikit.models import load_model
from lorikit.train import TrainConfig, Trainer, train

TINY = "tiny-random-llama"
SPARSITY = 0.9
STARTS = ("fresh", "mask", "continual")


def supports(method, start: str) -> bool:
    return {"fresh": not method.uses_mask, "mask": method.uses_mask, "continual": method.continues}[start]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A dense LoRI-D-style parent (seed 5, rank 4) with its 0.9 mask: what LoRI-S and --from start from."""
    dense = next(m for m in METHODS.values() if m.seeded_a and not m.uses_mask)
    out = train(TrainConfig(out=str(tmp_path_factory.mktemp("parent") / "p"), model=TINY, data="builtin:compare",
                            max_steps=2, lr=1e-2, batch_size=4, builtin_rows=32,
                            adapter=AdapterConfig(method=dense.name, rank=4, seed=5)))
    write_masks(out, [SPARSITY])
    return out


def config(method, start: str, parent, out) -> TrainConfig:
    kw = {}
    if start == "mask" or (start == "continual" and method.uses_mask):
        kw["mask"] = str(parent / "masks" / f"{SPARSITY:g}_mask.pt")
    if start == "continual":
        kw["from_adapter"] = str(parent)
    return TrainConfig(out=str(out), model=TINY, data="builtin:reverse", max_steps=1, lr=1e-2, batch_size=4,
                       builtin_rows=16, adapter=AdapterConfig(method=method.name, rank=4, seed=None if start != "fresh"
                                                              else 3), **kw)


CASES = [(m, s) for m in METHODS for s in STARTS]


@pytest.mark.parametrize("name,start", CASES)
def test_method_contract(name, start, parent, tmp_path):
    method = METHODS[name]
    if not supports(method, start):
        if start != "continual":  # --from picks the continuing method itself; the others are refused
            with pytest.raises(UsageError):
                config(method, start, parent, tmp_path / "out")
        return
    cfg = config(method, start, parent, tmp_path / "out")
    trained = cfg.train_method
    _, peft_model, plan = Trainer(cfg).build_model()
    layers = list(lora_layers(peft_model))
    assert layers
    for _, layer in layers:
        assert layer.lora_A["default"].weight.requires_grad is not trained.freezes_a
    a_sizes = [layer.lora_A["default"].weight.numel() for _, layer in layers]
    b_sizes = [layer.lora_B["default"].weight.numel() for _, layer in layers]
    planned = sum(p.numel() for p in plan.parameters())
    assert planned == trained.trainable_count(a_sizes, b_sizes, SPARSITY, "global")
    start_a = {n: layer.lora_A["default"].weight.detach().clone() for n, layer in layers}

    out = train(cfg)
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["method"] == trained.name
    state = load_adapter(out)
    stock = load_peft(load_model(TINY).model, out)
    for module, layer in lora_layers(stock):
        saved = state.modules()[module]
        assert torch.equal(layer.lora_A["default"].weight.float(), saved.A.float())
        assert torch.equal(layer.lora_B["default"].weight.float(), saved.B.float())
        if trained.freezes_a:
            assert torch.equal(saved.A.float(), start_a[module].float()), module
        if trained.seeded_a and start == "fresh":
            A = seeded_projection(meta["seed"], module, *saved.A.shape, meta.get("a_init", "kaiming"))
            assert torch.equal(saved.A.float(), A), module
