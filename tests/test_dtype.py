"""`--dtype auto`: bfloat16 on a CPU that computes it natively, float32 elsewhere; recorded and hashed."""

from __future__ import annotations

import json

import pytest
import torch

from lorikit.errors import UsageError
from lorikit.models import device as devmod
from lorikit.models.device import resolve_dtype
from lorikit.pipeline import parse_recipe, plan_recipe
from lorikit.pipeline.kinds import get_kind
from lorikit.pipeline.runner import stage_hash

TRAIN = {"model": "tiny-random-llama", "max_steps": 2, "batch_size": 4, "builtin_rows": 16, "rank": 4, "lr": 0.01,
         "method": "lori-d", "seed": 1}


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "1")


def test_auto_follows_the_cpu_and_explicit_values_are_kept(monkeypatch):
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "1")
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    assert resolve_dtype("float32", "cpu") == "float32"
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "0")
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(UsageError, match=r"--dtype 'int8': unknown \(choose from auto, float32"):
        resolve_dtype("int8", "cpu")


def test_explicit_bf16_on_a_cpu_that_emulates_it_warns_once(monkeypatch, caplog):
    devmod._warn_emulated_bf16.cache_clear()
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "1")
    with caplog.at_level("WARNING", logger="lorikit.models.device"):
        resolve_dtype("bfloat16", "cpu")
    assert not caplog.records  # native: nothing to say
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "0")
    with caplog.at_level("WARNING", logger="lorikit.models.device"):
        for _ in range(3):
            assert resolve_dtype("bfloat16", "cpu") == "bfloat16"  # kept: the user asked for it
        resolve_dtype("float32", "cpu")
    assert len(caplog.records) == 1 and "emulates it" in caplog.records[0].getMessage()
    assert "--dtype auto picks float32 here" in caplog.records[0].getMessage()
    devmod._warn_emulated_bf16.cache_clear()


def test_cpu_detection_reads_the_bf16_flags(monkeypatch):
    monkeypatch.delenv(devmod.CPU_BF16_ENV)
    monkeypatch.setattr(devmod.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(devmod, "_cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert devmod.cpu_has_bf16()
    monkeypatch.setattr(devmod, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))  # AVX-512 alone emulates bf16
    assert not devmod.cpu_has_bf16()
    monkeypatch.setattr(devmod, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert devmod.cpu_has_bf16()


def test_default_training_on_a_bf16_cpu_has_a_bf16_base_and_float32_adapter(tmp_path, bf16_cpu):
    from safetensors.torch import load_file

    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig
    from lorikit.train.trainer import Trainer

    cfg = TrainConfig(out=str(tmp_path / "a"), model="tiny-random-llama", data="builtin:compare", builtin_rows=8,
                      max_steps=2, batch_size=2, lr=1e-2, device="cpu", adapter=AdapterConfig(method="lori-d", rank=2, seed=1))
    assert cfg.dtype == "bfloat16"
    trainer = Trainer(cfg)
    out = trainer.run()
    params = dict(trainer.peft_model.named_parameters())
    assert params["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"].dtype == torch.bfloat16
    assert params["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"].dtype == torch.float32
    assert all(s["exp_avg"].dtype == torch.float32 for s in trainer.optimizer.state.values())
    assert all(v.dtype == torch.float32 for v in load_file(str(out / "adapter_model.safetensors")).values())
    assert json.loads((out / "lorikit.json").read_text())["hyperparameters"]["dtype"] == "bfloat16"
    opt_out = TrainConfig(out=str(tmp_path / "b"), model="tiny-random-llama", data="builtin:compare", dtype="float32")
    assert opt_out.dtype == "float32"


def test_default_eval_on_a_bf16_cpu_runs_and_records_bfloat16(tmp_path, bf16_cpu):
    from lorikit.eval.config import EvalConfig
    from lorikit.eval.runner import evaluate

    result = evaluate(EvalConfig(model="tiny-random-llama", task="builtin", data="builtin:pair-greater", limit=4,
                                 builtin_rows=8, scoring="loglik", device="cpu"), progress=False)
    assert result["settings"]["dtype"] == "bfloat16" and result["n"] == 4


def test_stage_hash_holds_the_resolved_dtype(tmp_path, monkeypatch):
    stages = {"a": {"kind": "train", "data": "builtin:compare"},
              "b": {"kind": "train", "data": "builtin:compare", "dtype": "float32"}}
    recipe = parse_recipe({"workdir": "w", "defaults": {"train": TRAIN}, "stages": stages}, workdir=tmp_path)
    kind = get_kind("train", "a", "test")
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "0")
    fp32 = {p.name: p for p in plan_recipe(recipe)}
    # float32 runs keep the hash they had before `auto` existed
    assert fp32["a"].hash == stage_hash(kind, recipe.stages["a"].settings, {}) and fp32["a"].resolved == {}
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "1")
    bf16 = {p.name: p for p in plan_recipe(recipe)}
    assert bf16["a"].resolved == {"dtype": "bfloat16"} and bf16["a"].hash != fp32["a"].hash
    assert bf16["a"].prepared.config.dtype == "bfloat16"
    assert bf16["b"].hash == fp32["b"].hash and bf16["b"].prepared.config.dtype == "float32"  # the explicit opt-out


def test_study_passes_an_explicit_dtype_to_every_train_and_eval_stage_and_leaves_auto_to_them():
    from lorikit.study.config import StudyConfig
    from lorikit.study.recipe import study_recipe

    auto = study_recipe(StudyConfig(model="tiny-random-llama", tasks=["pair-add", "pair-max"], methods=["lora"], seeds=[1]))
    assert "dtype" not in auto["defaults"]["train"] and "dtype" not in auto["defaults"]["eval"]
    fp32 = study_recipe(StudyConfig(model="tiny-random-llama", tasks=["pair-add", "pair-max"], methods=["lora"],
                                    seeds=[1], dtype="float32"))
    assert fp32["defaults"]["train"]["dtype"] == fp32["defaults"]["eval"]["dtype"] == "float32"
    with pytest.raises(UsageError, match="--dtype 'fp8'"):
        StudyConfig(dtype="fp8")
