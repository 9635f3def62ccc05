"""A recipe's stages read their base model once (models.loading.keep_base_loaded) and share no state."""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file, save_file

from lorikit import AdapterConfig, TrainConfig, train
from lorikit.models import kept, loading
from lorikit.models.loading import keep_base_loaded, load_model, tiny_folder
from lorikit.pipeline import parse_recipe, run_recipe


def count_loads(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    real = loading._load_model

    def counted(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(loading, "_load_model", counted)
    return calls


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_kept_base_is_read_once_and_every_caller_gets_its_own_copy(monkeypatch):
    folder = str(tiny_folder())
    fresh = load_model(folder)
    calls = count_loads(monkeypatch)
    with keep_base_loaded():
        copies = []
        for _ in range(3):
            bundle = load_model(folder)
            assert same_weights(bundle.model, fresh.model)
            assert bundle.tokenizer.padding_side == fresh.tokenizer.padding_side
            assert bundle.base_model_id == fresh.base_model_id and bundle.model.name_or_path == fresh.model.name_or_path
            assert all(bundle.model is not c.model and bundle.tokenizer is not c.tokenizer for c in copies)
            with torch.no_grad():  # what a stage may do to its model: change weights, the tokenizer's padding side
                next(bundle.model.parameters()).add_(1.0)
            bundle.tokenizer.padding_side = "left" if fresh.tokenizer.padding_side == "right" else "right"
            copies.append(bundle)
        assert len(calls) == 1
        load_model(folder, dtype="bfloat16")  # other settings: read again, and kept instead
        load_model(folder, dtype="bfloat16")
        assert len(calls) == 2
    assert kept._KEPT.bundle is None  # dropped on leaving
    load_model(folder)
    assert len(calls) == 3  # outside the block every load reads the folder


def test_a_folder_rewritten_between_stages_is_read_again(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder(), folder)
    calls = count_loads(monkeypatch)
    with keep_base_loaded():
        before = load_model(str(folder))
        weights = load_file(folder / "model.safetensors")
        name = next(iter(weights))
        weights[name] = weights[name] + 1.0
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        after = load_model(str(folder))
    assert len(calls) == 2
    assert not same_weights(before.model, after.model)


def test_stages_of_a_recipe_train_the_same_adapters_as_runs_of_their_own(tmp_path, monkeypatch):
    """Three trainings and their evaluations in one `lorikit run` (one kept base) give bit-identical adapters to
    the same trainings each loading the base itself: nothing of the first stage reaches the second."""
    folder = str(tiny_folder())
    common = {"model": folder, "max_steps": 3, "batch_size": 4, "builtin_rows": 16, "rank": 4, "lr": 0.01,
              "dropout": 0.1}
    stages = {"a": {"kind": "train", "data": "builtin:compare", "method": "lora", "seed": 1},
              "eval-a": {"kind": "eval", "adapter": "$a", "data": "builtin:compare:test", "task": "builtin",
                         "limit": 4, "model": folder},
              "b": {"kind": "train", "data": "builtin:compare", "method": "lori-d", "seed": 2},
              "c": {"kind": "train", "data": "builtin:compare", "method": "lora", "seed": 3}}
    recipe = parse_recipe({"workdir": str(tmp_path / "w"), "defaults": {"train": common}, "stages": stages},
                          workdir=tmp_path / "w")
    calls = count_loads(monkeypatch)
    run_recipe(recipe, echo=lambda s: None)
    assert len(calls) == 1  # four stages on one base model, one read
    for name, method, seed in (("a", "lora", 1), ("b", "lori-d", 2), ("c", "lora", 3)):
        alone = tmp_path / f"alone-{name}"
        train(TrainConfig(out=str(alone), data="builtin:compare", model=folder, max_steps=3, batch_size=4,
                          builtin_rows=16, lr=0.01, adapter=AdapterConfig(method=method, rank=4, seed=seed,
                                                                          dropout=0.1)))
        got = load_file(tmp_path / "w" / name / "adapter_model.safetensors")
        want = load_file(alone / "adapter_model.safetensors")
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_loading_a_folder_model_draws_nothing_from_torchs_generator():
    """Why a kept copy and a fresh read are interchangeable: training seeds torch before it loads the base,
    so a load that drew random numbers would shift the run's draws whenever the read was skipped."""
    torch.manual_seed(5)
    want = torch.rand(4)
    torch.manual_seed(5)
    load_model(str(tiny_folder()))
    assert torch.equal(torch.rand(4), want)
