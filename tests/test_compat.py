"""Adapters written before the method/init registries and the TrainConfig sub-configs still load, pack,
seed a LoRI-S run and continue: the fixture is a LoRI-D folder with the ``lorikit.json`` layout lorikit
0.1.0 wrote (flat ``osrm_*`` hyper-parameters, ``adapter_config`` with its resolved seed)."""

from __future__ import annotations

import json

import torch

from lorikit.adapters.build import AdapterConfig, attach_adapter, lora_layers
from lorikit.adapters.masks import write_masks
from lorikit.adapters.pack import pack_adapter, read_packed
from lorikit.adapters.seeded import seeded_projection
from lorikit.adapters.state import load_adapter
from lorikit.models import load_model
from lorikit.train import TrainConfig, train

TINY = "tiny-random-llama"
SEED = 11

OLD_HYPERPARAMETERS = {
    "model": TINY, "data": "builtin:arithmetic", "format": "auto", "limit": None, "builtin_rows": 10,
    "epochs": 1.0, "max_steps": 2, "batch_size": 5, "grad_accum": 1, "lr": 0.001, "lr_scheduler": "constant",
    "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0, "max_length": 384, "max_prompt_length": 256,
    "bf16": False, "logits": "supervised", "device": "auto", "log_every": 1, "mask": None, "from_adapter": None,
    "head": "causal-lm", "num_labels": 2, "init": "default", "osrm_stats": None, "task": None,
    "osrm_mode": "mean", "osrm_scale": "unit", "freeze": "none", "save_every": 0, "keep_checkpoints": 2,
    "deterministic": False, "grad_checkpointing": False}


def old_lori_d_adapter(folder) -> None:
    """A trained-looking LoRI-D adapter (seeded A, random B) with a 0.1.0-style lorikit.json."""
    bundle = load_model(TINY)
    peft_model = attach_adapter(bundle.model, AdapterConfig(method="lori-d", rank=4, seed=SEED), TINY)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in lora_layers(peft_model):
            weight = layer.lora_B["default"].weight
            weight.copy_(torch.randn(weight.shape, generator=gen) * 0.01)
    peft_model.save_pretrained(str(folder))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    meta = {"lorikit_version": "0.1.0", "method": "lori-d", "seed": SEED, "a_init": "kaiming", "head": "causal-lm",
            "num_labels": None, "init": {"kind": "default"}, "freeze": "none", "base_model": TINY, "rank": 4,
            "alpha": 8.0, "target_modules": targets, "data": {"source": "builtin:arithmetic", "format": "auto",
                                                              "rows": 10},
            "hyperparameters": {"out": str(folder), **OLD_HYPERPARAMETERS},
            "adapter_config": {"method": "lori-d", "rank": 4, "alpha": 8.0, "dropout": 0.0,
                               "target_modules": targets, "a_init": "kaiming", "seed": SEED},
            "train": {"steps": 2, "final_loss": 5.4, "seconds": 1.0, "trainable_parameters": 1}}
    (folder / "lorikit.json").write_text(json.dumps(meta, indent=2) + "\n")


def test_old_adapter_loads_packs_and_regenerates_A(tmp_path):
    old = tmp_path / "old-d"
    old_lori_d_adapter(old)
    state = load_adapter(old)
    assert state.method == "lori-d" and state.seed == SEED
    report = pack_adapter(old, tmp_path / "old.lori")
    assert report.a_regenerated == report.modules == len(state.modules())
    unpacked, _ = read_packed(tmp_path / "old.lori")
    assert all(torch.equal(unpacked.tensors[k], v) for k, v in state.tensors.items())


def test_old_adapter_seeds_lori_s_and_continual_runs(tmp_path):
    old = tmp_path / "old-d"
    old_lori_d_adapter(old)
    (mask, _), = write_masks(old, [0.5])
    common = dict(model=TINY, data="builtin:compare", max_steps=1, batch_size=4, builtin_rows=8, lr=1e-2)
    child = train(TrainConfig(out=str(tmp_path / "s"), mask=str(mask), adapter=AdapterConfig(method="lori-s"),
                              **common))
    meta = json.loads((child / "lorikit.json").read_text())
    assert meta["method"] == "lori-s" and meta["seed"] == SEED and meta["a_from"] == str(old)
    assert meta["adapter_config"]["seed"] == SEED and meta["adapter_config"]["rank"] == 4
    for name, module in load_adapter(child).modules().items():
        assert torch.equal(module.A, seeded_projection(SEED, name, 4, module.A.shape[1])), name

    cont = train(TrainConfig(out=str(tmp_path / "c"), from_adapter=str(old), **common))
    meta = json.loads((cont / "lorikit.json").read_text())
    assert meta["method"] == "lori-d" and meta["seed"] == SEED
    assert meta["parent"] == {"path": str(old), "method": "lori-d", "seed": SEED}
    parent = load_adapter(old).modules()
    for name, module in load_adapter(cont).modules().items():
        assert torch.equal(module.A, parent[name].A), name
