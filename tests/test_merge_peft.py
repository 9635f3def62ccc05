"""Merges of real PEFT adapters with rsLoRA, rank_pattern and alpha_pattern reload in stock PEFT.

Anchors: PEFT issue 3761 (``add_weighted_adapter`` wrong with rsLoRA: the scale s = α / √r must be
each parent's own) and 3737 (merges of adapters with ``rank_pattern`` could not be reloaded). The
parents are written by PEFT itself on tiny-random-llama; the expected update of each parent is
PEFT's own ``get_delta_weight``; every merged folder is loaded back with ``PeftModel.from_pretrained``.
"""

from __future__ import annotations

import json

import pytest
import torch

from lorikit.adapters.build import lora_layers
from lorikit.cli import main as cli
from lorikit.models import load_model

TINY = "tiny-random-llama"
WEIGHTS = [0.6, 0.5, -0.3]
CONFIGS = [
    {"r": 4, "lora_alpha": 8, "use_rslora": True},
    {"r": 4, "lora_alpha": 8, "rank_pattern": {"q_proj": 8}, "alpha_pattern": {"q_proj": 4}},
    {"r": 2, "lora_alpha": 16, "use_rslora": True, "alpha_pattern": {"down_proj": 3}},
]


def peft_adapter(path, seed: int, use_dora: bool = False, **kw) -> tuple[str, dict[str, torch.Tensor]]:
    """A PEFT-written adapter with random non-zero B, and PEFT's own ΔW per module."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(load_model(TINY).model, LoraConfig(
        target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False, use_dora=use_dora, **kw))
    model.save_pretrained(str(path))
    with torch.no_grad():
        deltas = {name: layer.get_delta_weight("default").double() for name, layer in lora_layers(model)}
    return str(path), deltas


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    root = tmp_path_factory.mktemp("peft-parents")
    return [peft_adapter(root / f"p{i}", seed=i, **cfg) for i, cfg in enumerate(CONFIGS)]


@pytest.mark.parametrize("method", ["cat", "knots", "core-space"])
def test_merge_of_rslora_and_patterns_reloads_in_stock_peft(tmp_path, parents, method):
    from peft import PeftModel

    paths = [p for p, _ in parents]
    out = tmp_path / method
    assert cli(["merge", *paths, "--method", method, "--weights", *map(str, WEIGHTS), "--out", str(out)]) == 0
    merged = PeftModel.from_pretrained(load_model(TINY).model, str(out))
    layers = dict(lora_layers(merged))
    assert set(layers) == set(parents[0][1])
    for name, layer in layers.items():
        expected = sum(w * deltas[name] for w, (_, deltas) in zip(WEIGHTS, parents))
        with torch.no_grad():
            got = layer.get_delta_weight("default").double()
        assert (got - expected).norm() / expected.norm() < 1e-5, name
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["use_rslora"] is False  # every module's scale is written as α = s · r


def test_parents_scales_follow_rslora_and_patterns(parents):
    from lorikit.adapters.state import load_adapter

    for (path, deltas), cfg in zip(parents, CONFIGS):
        state = load_adapter(path)
        for name, m in state.modules().items():
            assert (m.delta().double() - deltas[name]).norm() <= 1e-5 * deltas[name].norm(), (cfg, name)


def test_dora_adapter_is_refused_and_nothing_written(tmp_path, parents, capsys):
    dora, _ = peft_adapter(tmp_path / "dora", seed=5, use_dora=True, r=4, lora_alpha=8)
    out = tmp_path / "out"
    assert cli(["merge", parents[0][0], dora, "--method", "knots", "--out", str(out)]) == 1
    assert "a DoRA adapter (use_dora) is not a plain B A update and cannot be merged" in capsys.readouterr().err
    assert not out.exists()
