"""``train_together``: a study's (or recipe's) train stages whose inputs are ready run as one
``train_many`` process, each written to its own stage folder with its own record, and equal to the
same stages trained one by one to float tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorikit.errors import UsageError
from lorikit.pipeline.recipe import parse_recipe
from lorikit.pipeline.runner import plan_recipe
from lorikit.study import StudyConfig, run_study, study_recipe

from test_study import TINY

# float32 named: `auto` may pick bf16 on a CPU with native bf16, where joint and solo runs differ by more
BASE = {**TINY, "tasks": {"pair-max": None, "parity": None}, "methods": ["lora", "lori-d"], "seeds": [1],
        "max_steps": 3, "pair_weight": None, "shared_prefix": False, "dtype": "float32"}


def _trainings(workdir: Path) -> list[str]:
    return sorted(p.parent.name for p in workdir.glob("*/lorikit-stage.json")
                  if json.loads(p.read_text())["kind"] == "train")


def test_a_study_trained_together_equals_the_one_trained_stage_by_stage(tmp_path):
    lines: list[str] = []
    solo = StudyConfig(**BASE, workdir=str(tmp_path / "solo"))
    joint = StudyConfig(**BASE, train_together=True, workdir=str(tmp_path / "joint"))
    run_study(solo)
    run_study(joint, echo=lines.append)
    names = _trainings(tmp_path / "solo")
    assert names == _trainings(tmp_path / "joint") and len(names) == 4
    for name in names:
        a = load_file(tmp_path / "solo" / name / "adapter_model.safetensors")
        b = load_file(tmp_path / "joint" / name / "adapter_model.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    records = {n: json.loads((tmp_path / "joint" / n / "lorikit-stage.json").read_text()) for n in names}
    together = [r["trained_together"] for r in records.values() if "trained_together" in r]
    assert together and all(len(t) > 1 for t in together)  # the runner grouped ready trainings
    assert any(" with " in line for line in lines)
    assert not list((tmp_path / "joint").glob("*.ckpt"))  # a joint run writes no resume states
    # part of the hash (joint and solo adapters agree to tolerance only), and resumable as a whole
    hashes = {p.name: p.hash for p in plan_recipe(parse_recipe(study_recipe(solo), workdir=tmp_path / "solo"), resume=True)}
    again = {p.name: p for p in plan_recipe(parse_recipe(study_recipe(joint), workdir=tmp_path / "joint"), resume=True)}
    assert all(again[n].hash != hashes[n] for n in names)
    assert all(p.status == "done" for p in again.values())
    assert (tmp_path / "joint" / "table" / "table.md").is_file()


@pytest.mark.parametrize("setting", [{"shared_prefix": True}, {"grad_checkpointing": True},
                                     {"head": "classification", "data": "builtin:parity"}])
def test_train_together_refuses_at_planning_what_a_joint_run_cannot_do(tmp_path, setting):
    """The stage says so before anything runs, with the setting train_many itself would refuse."""
    if "shared_prefix" in setting:
        with pytest.raises(UsageError, match="train_together: needs shared_prefix: false"):
            StudyConfig(**{**BASE, "shared_prefix": True}, train_together=True, workdir=str(tmp_path))
    stage = {"kind": "train", "model": "tiny-random-llama", "data": "builtin:pair-max", "train_together": True,
             **setting}
    name = next(k for k in setting if k != "data")
    value = "true" if setting[name] is True else f'"{setting[name]}"'  # as the recipe spells it
    with pytest.raises(UsageError, match=f"stage 'a' \\(train\\): train_together cannot be combined with {name}: {value} "):
        plan_recipe(parse_recipe({"name": "r", "stages": {"a": stage}}, workdir=tmp_path))
    assert not (tmp_path / "a").exists()


def test_a_stage_waits_for_a_parent_this_run_redoes(tmp_path):
    """With --overwrite every stage is redone: a continual stage is not trained with its parent's old
    output, even though that output is on disk (and complete) when the parent's turn comes."""
    from lorikit.pipeline.runner import run_recipe

    common = {"kind": "train", "model": "tiny-random-llama", "max_steps": 2, "builtin_rows": 24, "dtype": "float32",
              "train_together": True}
    recipe = {"name": "r", "stages": {"first": {**common, "data": "builtin:pair-max"},
                                      "then": {**common, "data": "builtin:parity", "from_adapter": "$first"},
                                      "other": {**common, "data": "builtin:pair-min"}}}
    for overwrite in (False, True):
        run_recipe(parse_recipe(recipe, workdir=tmp_path), overwrite=overwrite)
        records = {n: json.loads((tmp_path / n / "lorikit-stage.json").read_text()) for n in ("first", "then", "other")}
        assert records["first"]["trained_together"] == ["first", "other"]
        assert "trained_together" not in records["then"]  # its parent was (re)done first
