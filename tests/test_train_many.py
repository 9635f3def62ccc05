"""Several adapters trained together over one base model equal each trained alone (tiny-random-llama, float32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorikit import AdapterConfig, TrainConfig, train
from lorikit.adapters.masks import write_masks
from lorikit.cli import main
from lorikit.errors import UsageError
from lorikit.train import train_many

TINY = dict(model="tiny-random-llama", builtin_rows=40, max_length=512, dtype="float32")
# Float tolerance of the equality: the joint run sums in another order (base GEMMs over more rows,
# attention over more padded keys), which moves float32 weights by ~1e-6 after a few AdamW steps.
RTOL, ATOL = 1e-4, 1e-5


def configs(root: Path) -> list[TrainConfig]:
    """Three runs that differ in everything a run owns: method, data, seed, batch shape, schedule,
    dropout, step budget and early stopping (run c stops at its second dev evaluation: no later
    evaluation can beat the first by min_delta 10)."""
    return [
        TrainConfig(out=str(root / "a"), data="builtin:compare", max_steps=8, lr=1e-2, batch_size=4,
                    adapter=AdapterConfig(method="lora", rank=4, seed=1, dropout=0.1), **TINY),
        TrainConfig(out=str(root / "b"), data="builtin:pair-max", max_steps=6, lr=1e-2, batch_size=2, grad_accum=2,
                    lr_scheduler="cosine", warmup_steps=2,
                    adapter=AdapterConfig(method="lori-d", rank=8, seed=2, dropout=0.05), **TINY),
        TrainConfig(out=str(root / "c"), data="builtin:parity", max_steps=30, lr=1e-3, batch_size=3,
                    eval_every=2, patience=1, min_delta=10.0, dev_fraction=0.25,
                    adapter=AdapterConfig(method="lora", rank=4, seed=3), **TINY),
    ]


def assert_same_adapter(solo: Path, joint: Path) -> None:
    got, want = load_file(joint / "adapter_model.safetensors"), load_file(solo / "adapter_model.safetensors")
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=RTOL, atol=ATOL, msg=f"{joint.name}: {key}")
    assert any(bool(want[k].abs().max() > 1e-3) for k in want if "lora_B" in k)  # B moved off 0: a real comparison
    meta_solo, meta_joint = (json.loads((p / "lorikit.json").read_text()) for p in (solo, joint))
    for key in ("method", "seed", "rank", "alpha", "target_modules", "data", "adapter_config"):
        assert meta_joint[key] == meta_solo[key], key
    assert meta_joint["train"]["steps"] == meta_solo["train"]["steps"]
    for k in ("chosen_step", "steps_run", "stopped"):
        assert meta_joint.get("early_stopping", {}).get(k) == meta_solo.get("early_stopping", {}).get(k)
    assert json.loads((joint / "adapter_config.json").read_text()) == json.loads((solo / "adapter_config.json").read_text())
    logs = [[json.loads(line) for line in (p / "train_log.jsonl").read_text().splitlines()] for p in (solo, joint)]
    assert [r["step"] for r in logs[1]] == [r["step"] for r in logs[0]]
    assert [r["loss"] for r in logs[1]] == pytest.approx([r["loss"] for r in logs[0]], rel=1e-5)


def test_joint_runs_equal_solo_runs(tmp_path):
    solo = configs(tmp_path / "solo")
    for cfg in solo:
        train(cfg)
    c_meta = json.loads((tmp_path / "solo" / "c" / "lorikit.json").read_text())["early_stopping"]
    assert c_meta["stopped"] == "plateau" and c_meta["steps_run"] == 4  # run c leaves the joint batch early

    outs = train_many(configs(tmp_path / "joint"))
    assert outs == [tmp_path / "joint" / n for n in "abc"]
    for name in "abc":
        assert_same_adapter(tmp_path / "solo" / name, tmp_path / "joint" / name)


def test_lori_s_and_a_continual_run_train_together(tmp_path):
    parent = tmp_path / "parent"
    train(TrainConfig(out=str(parent), data="builtin:compare", max_steps=4, lr=1e-2, batch_size=4,
                      adapter=AdapterConfig(method="lori-d", rank=4, seed=7), **TINY))
    write_masks(parent, [0.9])
    mask = str(parent / "masks" / "0.9_mask.pt")

    def pair(root: Path) -> list[TrainConfig]:
        return [TrainConfig(out=str(root / "s"), data="builtin:pair-max", mask=mask, max_steps=5, lr=1e-2,
                            batch_size=4, adapter=AdapterConfig(method="lori-s"), **TINY),
                TrainConfig(out=str(root / "cont"), data="builtin:parity", from_adapter=str(parent), max_steps=5,
                            lr=1e-2, batch_size=2, adapter=AdapterConfig(method="lori-d"), **TINY)]

    for cfg in pair(tmp_path / "solo"):
        train(cfg)
    train_many(pair(tmp_path / "joint"))
    for name in ("s", "cont"):
        assert_same_adapter(tmp_path / "solo" / name, tmp_path / "joint" / name)
    masked = load_file(tmp_path / "joint" / "s" / "adapter_model.safetensors")
    assert any(bool((v == 0).float().mean() > 0.85) for k, v in masked.items() if "lora_B" in k)  # still sparse


@pytest.mark.parametrize("change, message", [
    ({"model": "smollm2-135m"}, "run 2 .*--model 'smollm2-135m' differs from run 1's 'tiny-random-llama'"),
    ({"dtype": "bfloat16"}, "run 2 .*--dtype"),
    ({"save_every": 2}, "run 2 .*--save-every is not supported"),
    ({"grad_checkpointing": True}, "run 2 .*--grad-checkpointing is not supported"),
    ({"shared_prefix": True}, "run 2 .*--shared-prefix is not supported"),
    ({"out": "SAME"}, "run 2 .*--out overlaps run 1's --out"),
])
def test_incompatible_runs_are_refused_before_anything_is_written(tmp_path, change, message):
    first = TrainConfig(out=str(tmp_path / "a"), data="builtin:compare", max_steps=1, **TINY)
    settings = {**TINY, "out": str(tmp_path / "b"), "data": "builtin:compare", "max_steps": 1, **change}
    if settings["out"] == "SAME":
        settings["out"] = first.out
    with pytest.raises(UsageError, match=message):
        train_many([first, TrainConfig(**settings)])
    assert not any(tmp_path.iterdir())


def test_cli_trains_every_config_file(tmp_path, capsys):
    files = []
    for name, data in (("a", "compare"), ("b", "pair-max")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"out: {tmp_path / 'out' / name}\nmodel: tiny-random-llama\ndata: builtin:{data}\n"
                        f"builtin_rows: 16\nmax_steps: 2\nbatch_size: 4\nlora_r: 4\nseed: 1\ndtype: float32\n")
        files.append(str(path))
    assert main(["train-many", *files]) == 0
    out = capsys.readouterr().out
    for name in "ab":
        assert (tmp_path / "out" / name / "adapter_model.safetensors").is_file()
        assert f"adapter written to {tmp_path / 'out' / name}" in out
    assert main(["train-many", files[0], str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err


def test_a_run_that_cannot_start_stops_all_before_anything_is_written(tmp_path):
    good = TrainConfig(out=str(tmp_path / "a"), data="builtin:compare", max_steps=1, **TINY)
    bad = TrainConfig(out=str(tmp_path / "b"), data=str(tmp_path / "nope.jsonl"), max_steps=1, **TINY)
    with pytest.raises(UsageError, match="nope.jsonl"):
        train_many([good, bad])
    assert not any(tmp_path.iterdir())  # no output folder, no lock file
