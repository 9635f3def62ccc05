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
    inner = ["--inner", "task-arithmetic"] if method != "cat" else []  # the exact weighted sum
    assert cli(["merge", *paths, "--method", method, *inner, "--weights", *map(str, WEIGHTS), "--out", str(out)]) == 0
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


# ---- portable outputs: what a server that ignores rank_pattern / alpha_pattern reads -------------------
def vllm_rule_deltas(folder) -> dict[str, torch.Tensor]:
    """ΔW per module as vLLM's loader computes it: one scale lora_alpha / r (√r with use_rslora) for every
    module, rank_pattern and alpha_pattern ignored (vLLM's ``PEFTHelper``)."""
    from safetensors.torch import load_file

    from lorikit.adapters.state import module_name_from_key

    config = json.loads((folder / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / (r ** 0.5 if config.get("use_rslora") else r)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(folder / "adapter_model.safetensors")).items():
        module, which = module_name_from_key(key)
        pairs.setdefault(module, {})[which] = t.double()
    for module, pair in pairs.items():
        assert pair["A"].shape[0] == r, f"{module}: rank {pair['A'].shape[0]}, the config says r={r}"
    return {m: scale * p["B"] @ p["A"] for m, p in pairs.items()}


def peft_deltas(folder) -> dict[str, torch.Tensor]:
    from peft import PeftModel

    merged = PeftModel.from_pretrained(load_model(TINY).model, str(folder))
    with torch.no_grad():
        return {name: layer.get_delta_weight("default").double() for name, layer in lora_layers(merged)}


def portable_methods() -> list[list[str]]:
    from lorikit.merge.registry import methods

    runs = []
    for name, m in methods().items():
        if name == "linear":  # PEFT's linear needs equal parent ranks (these differ per module)
            continue
        runs.append([name, "--task", "p1"] if m.kind.per_task else [name])
    return runs


@pytest.mark.parametrize("method", portable_methods(), ids=lambda m: m[0])
def test_every_merge_is_read_the_same_by_peft_and_by_a_server_ignoring_patterns(tmp_path, parents, method):
    """Parents with rsLoRA, rank_pattern and alpha_pattern merge into one rank and one scale: a loader
    applying vLLM's rule gets PEFT's ΔW, which equals the ΔW of the per-module (--rank-pattern keep) output."""
    paths = [p for p, _ in parents]
    common = [*paths, "--method", *method, "--weights", *map(str, WEIGHTS), "--names", "p0", "p1", "p2"]
    out, keep = tmp_path / "pad", tmp_path / "keep"
    assert cli(["merge", *common, "--out", str(out)]) == 0
    assert cli(["merge", *common, "--out", str(keep), "--rank-pattern", "keep"]) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert not config["rank_pattern"] and not config["alpha_pattern"] and config["use_rslora"] is False
    served, stock, kept = vllm_rule_deltas(out), peft_deltas(out), peft_deltas(keep)
    assert set(served) == set(stock) == set(kept)
    for name in stock:
        norm = max(float(kept[name].norm()), 1e-12)
        assert float((served[name] - stock[name]).norm()) <= 1e-6 * norm, name
        assert float((stock[name] - kept[name]).norm()) <= 1e-6 * norm, name
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["serving"]["r"] == config["r"] and meta["serving"]["vllm_max_lora_rank"] >= config["r"]


def test_patterns_are_what_a_server_would_misread(tmp_path, parents):
    """The opt-out keeps per-module ranks / scales, which vLLM's rule reads wrongly: why pad is the default."""
    paths = [p for p, _ in parents]
    out = tmp_path / "keep"
    assert cli(["merge", *paths, "--method", "cat", "--weights", *map(str, WEIGHTS), "--out", str(out),
                "--rank-pattern", "keep"]) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["rank_pattern"] or config["alpha_pattern"]
    with pytest.raises(AssertionError, match="the config says r="):
        vllm_rule_deltas(out)


def test_uniform_modules_pads_and_folds_exactly():
    from lorikit.adapters.state import LoraModule, uniform_modules

    torch.manual_seed(0)
    mods = [LoraModule("a", torch.randn(2, 6), torch.randn(5, 2), 0.5),
            LoraModule("b", torch.randn(4, 6), torch.randn(5, 4), 2.0),
            LoraModule("c", torch.randn(3, 6), torch.randn(5, 3), 2.0)]
    out = uniform_modules(mods)
    assert {m.rank for m in out} == {4} and {m.scaling for m in out} == {2.0}
    for before, after in zip(mods, out):
        torch.testing.assert_close(after.delta(), before.delta(), rtol=1e-6, atol=1e-6)
    assert torch.equal(out[0].A[2:], torch.zeros(2, 6)) and torch.equal(out[0].B[:, 2:], torch.zeros(5, 2))
