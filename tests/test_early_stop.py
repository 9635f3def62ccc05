"""Training to convergence: dev loss every K steps, plateau stop, best adapter kept (tiny-random-llama)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from lorikit import AdapterConfig, TrainConfig, train
from lorikit.cli import main
from lorikit.errors import UsageError

TINY = dict(model="tiny-random-llama", builtin_rows=40, batch_size=4, max_length=256)
CAP = 200  # far past the plateau of the lr-2.0 runs below on every CPU seen (they stop there, not at the cap)


def meta(out) -> dict:
    return json.loads((out / "lorikit.json").read_text())


def test_plateau_stops_early_and_keeps_the_best_step(tmp_path):
    # lr so high that the dev loss drops and then stalls: patience 2 stops two evaluations after the best step.
    # Where it stalls depends on the CPU's kernels and on the dtype --dtype auto picks there (step 30-odd on an
    # AVX512-BF16 CPU in bf16, 46 on an AVX2-only one in fp32 or emulated bf16): the cap leaves room for both.
    out = tmp_path / "a"
    train(TrainConfig(out=str(out), data="builtin:compare", max_steps=CAP, lr=2.0, eval_every=2, patience=2,
                      dev_fraction=0.25, adapter=AdapterConfig(method="lora", rank=4, seed=1), **TINY))
    es = meta(out)["early_stopping"]
    losses = [h["dev_loss"] for h in es["history"]]
    assert es["stopped"] == "plateau" and es["steps_run"] < CAP
    assert es["best_dev_loss"] == min(losses)
    assert es["chosen_step"] == es["history"][losses.index(min(losses))]["step"]
    assert es["steps_run"] == es["history"][-1]["step"] and len(losses) - 1 - losses.index(min(losses)) == 2
    assert es["dev_examples"] == 10 and es["dev_data"] == "builtin:compare?split=dev&fraction=0.25"
    assert meta(out)["data"]["source"] == "builtin:compare?split=train&fraction=0.25"
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "dev_loss" in r] == [h["step"] for h in es["history"]]

    # the adapter written is the best step's: the same run capped at the chosen step gives the same weights
    ref = tmp_path / "ref"
    train(TrainConfig(out=str(ref), data="builtin:compare?split=train&fraction=0.25", max_steps=es["chosen_step"],
                      lr=2.0, adapter=AdapterConfig(method="lora", rank=4, seed=1), **TINY))
    got, want = load_file(out / "adapter_model.safetensors"), load_file(ref / "adapter_model.safetensors")
    assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in got)


def test_min_steps_holds_off_a_plateau_stop_until_that_step(tmp_path):
    """The run above stops on a plateau early; with --min-steps past that step it goes on (same data order, same
    evaluations up to there) and stops on the first plateau at or after --min-steps, keeping the best of all."""
    common = dict(data="builtin:compare", max_steps=CAP, lr=2.0, eval_every=2, patience=2, dev_fraction=0.25,
                  adapter=AdapterConfig(method="lora", rank=4, seed=1), **TINY)
    train(TrainConfig(out=str(tmp_path / "free"), **common))
    free = meta(tmp_path / "free")["early_stopping"]
    assert free["stopped"] == "plateau" and free["min_steps"] == 0
    hold = free["steps_run"] + 6
    train(TrainConfig(out=str(tmp_path / "held"), min_steps=hold, **common))
    held = meta(tmp_path / "held")["early_stopping"]
    assert held["min_steps"] == hold and held["steps_run"] >= hold
    assert held["history"][:len(free["history"])] == free["history"]
    losses = [h["dev_loss"] for h in held["history"]]
    assert held["best_dev_loss"] == min(losses)
    if held["stopped"] == "plateau":  # the first evaluation from `hold` on that is `patience` past the best
        since_best = len(losses) - 1 - losses.index(min(losses))
        assert since_best >= 2 and (since_best == 2 or held["history"][-2]["step"] < hold)


def test_no_patience_runs_to_the_cap_and_evaluates_the_last_step(tmp_path):
    out = tmp_path / "b"
    assert main(["train", "--model", "tiny-random-llama", "--data", "builtin:reverse", "--builtin-rows", "24",
                 "--max-steps", "5", "--batch-size", "4", "--eval-every", "2", "--dev-data", "builtin:reverse:dev",
                 "--dev-limit", "6", "--rank", "4", "--lr", "1e-3", "--out", str(out)]) == 0
    es = meta(out)["early_stopping"]
    assert [h["step"] for h in es["history"]] == [2, 4, 5]
    assert es["stopped"] == "cap" and es["steps_run"] == 5 and es["dev_examples"] == 6
    assert es["dev_data"] == "builtin:reverse:dev"


@pytest.mark.parametrize("kwargs,flag", [
    (dict(eval_every=2), "--dev-data SPEC or --dev-fraction"),
    (dict(patience=3), "need --eval-every"),
    (dict(eval_every=2, dev_fraction=1.5), "--dev-fraction 1.5"),
    (dict(eval_every=2, dev_fraction=0.1, dev_data="x.jsonl"), "give one"),
    (dict(eval_every=-1), "--eval-every -1"),
    (dict(eval_every=2, dev_fraction=0.1, min_steps=10), "--min-steps 10: needs --patience"),
    (dict(eval_every=2, dev_fraction=0.1, patience=2, min_steps=50, max_steps=20), "--min-steps 50: above --max-steps 20"),
    (dict(eval_every=2, dev_fraction=0.1, patience=2, min_steps=-1), "--min-steps -1"),
])
def test_bad_early_stopping_flags_are_one_line_usage_errors(tmp_path, kwargs, flag):
    with pytest.raises(UsageError, match=flag.replace("?", r"\?")):
        TrainConfig(out=str(tmp_path / "x"), **kwargs)


def test_eval_strategy_epoch_scores_dev_at_each_epoch_end(tmp_path):
    """--eval_strategy epoch (Hugging Face's spelling): dev loss after each pass over the training rows,
    the same evaluations as --eval-steps set to the epoch length; a cap mid-epoch is evaluated too."""
    common = ["train", "--model", "tiny-random-llama", "--data", "builtin:compare", "--builtin-rows", "32",
              "--dev_fraction", "0.25", "--per_device_train_batch_size", "4", "--lora_r", "4", "--seed", "1",
              "--learning_rate", "1e-2"]
    assert main([*common, "--num_train_epochs", "2", "--eval_strategy", "epoch", "--output_dir",
                 str(tmp_path / "e")]) == 0
    es, rows = meta(tmp_path / "e")["early_stopping"], meta(tmp_path / "e")["data"]["rows"]
    per_epoch = -(-rows // 4)
    assert rows == 24 and es["eval_strategy"] == "epoch" and es["eval_every"] == per_epoch
    assert [h["step"] for h in es["history"]] == [per_epoch, 2 * per_epoch] and es["steps_run"] == 2 * per_epoch

    assert main([*common, "--num_train_epochs", "2", "--eval_steps", str(per_epoch), "--output_dir",
                 str(tmp_path / "s")]) == 0
    assert meta(tmp_path / "s")["early_stopping"]["history"] == es["history"]

    assert main([*common, "--max_steps", str(per_epoch + 2), "--evaluation_strategy", "epoch", "--output_dir",
                 str(tmp_path / "c")]) == 0
    assert [h["step"] for h in meta(tmp_path / "c")["early_stopping"]["history"]] == [per_epoch, per_epoch + 2]


@pytest.mark.parametrize("kwargs,message", [
    (dict(eval_strategy="epoch"), "--eval-strategy epoch: needs --dev-data SPEC or --dev-fraction F"),
    (dict(eval_strategy="epoch", eval_every=3, dev_fraction=0.2), "--eval-strategy epoch with --eval-steps 3: give one"),
    (dict(eval_strategy="epoch", dev_fraction=0.2, head="classification"), "--eval-strategy epoch: not supported with"),
    (dict(eval_strategy="epochs"), r"unknown \(did you mean 'epoch'\?\)"),
])
def test_eval_strategy_epoch_bad_combinations(tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(out=str(tmp_path / "x"), **kwargs)


class Killed(Exception):
    """Stands in for a kill at a dev evaluation."""


def plateau_config(out, **kw) -> TrainConfig:
    # the settings of test_plateau_stops_early_and_keeps_the_best_step: best step early, plateau stop
    return TrainConfig(out=str(out), data="builtin:compare", max_steps=CAP, lr=2.0, eval_every=2, patience=2,
                       dev_fraction=0.25, adapter=AdapterConfig(method="lora", rank=4, seed=1), **TINY, **kw)


def kill_at_evaluation(monkeypatch, n: int) -> None:
    """The n-th dev evaluation (1-based) raises instead of scoring."""
    from lorikit.train.early_stop import EarlyStopping

    real, calls = EarlyStopping.dev_loss, []

    def dev_loss(self, model):
        calls.append(1)
        if len(calls) == n:
            raise Killed
        return real(self, model)

    monkeypatch.setattr(EarlyStopping, "dev_loss", dev_loss)


def test_early_stopped_run_killed_and_resumed_is_bit_identical(tmp_path, monkeypatch):
    """A kill between the best step and the plateau stop: --resume restores the dev-loss record and the
    best step's tensors from the checkpoint, stops at the same step and writes the same adapter."""
    ref = tmp_path / "ref"
    train(plateau_config(ref))
    want = meta(ref)["early_stopping"]
    # the kill comes at the last evaluation, so the newest checkpoint (2 steps earlier) is past the best step
    assert want["stopped"] == "plateau" and want["chosen_step"] < want["steps_run"] - 2

    out = tmp_path / "run"
    kill_at_evaluation(monkeypatch, len(want["history"]))
    with pytest.raises(Killed):
        train(plateau_config(out, save_every=2, resume_state_only=True))
    states = sorted(p.name for p in (tmp_path / "run.ckpt").iterdir())
    assert states == [f"step-{want['steps_run'] - 4:06d}", f"step-{want['steps_run'] - 2:06d}"]
    assert not out.exists() or not any(p.name.startswith("checkpoint-") for p in out.iterdir())

    monkeypatch.undo()
    train(plateau_config(out, save_every=2, resume_state_only=True, resume=True))
    assert meta(out)["early_stopping"] == want
    got, expect = load_file(out / "adapter_model.safetensors"), load_file(ref / "adapter_model.safetensors")
    assert got.keys() == expect.keys() and all((got[k] == expect[k]).all() for k in got)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    logs = [[json.loads(line) for line in (d / "train_log.jsonl").read_text().splitlines()] for d in (ref, out)]
    assert strip(logs[0]) == strip(logs[1])


def test_pipeline_train_stage_continues_after_a_kill_and_cleans_up(tmp_path, monkeypatch):
    """A recipe's train stage writes resume states of its own (no settings asked for them), a rerun
    continues from the newest with the same bytes as an uninterrupted stage, and removes them at the end;
    a state from other settings is discarded and the stage starts over."""
    import yaml

    from lorikit.pipeline import load_recipe, plan_recipe, run_recipe
    from lorikit.pipeline.kinds import train as train_kind
    from lorikit.pipeline.runner import STAGE_RECORD

    monkeypatch.setattr(train_kind, "RESUME_EVERY", 2)
    stage = {"kind": "train", "data": "builtin:compare", "max_steps": 40, "lr": 2.0, "eval_every": 2, "patience": 2,
             "dev_fraction": 0.25, "method": "lora", "rank": 4, "seed": 1, "model": "tiny-random-llama",
             "builtin_rows": 40, "batch_size": 4, "max_length": 256}

    def recipe(workdir, **change):
        path = tmp_path / f"{workdir}.yaml"
        path.write_text(yaml.safe_dump({"workdir": str(tmp_path / workdir), "stages": {"a": {**stage, **change}}}))
        return load_recipe(path)

    run_recipe(recipe("ref"), echo=lambda s: None)
    want = meta(tmp_path / "ref" / "a")["early_stopping"]
    assert not (tmp_path / "ref" / "a.ckpt").exists()

    kill_at_evaluation(monkeypatch, len(want["history"]))
    with pytest.raises(Killed):
        run_recipe(recipe("w"), echo=lambda s: None)
    assert (tmp_path / "w" / "a.ckpt").is_dir()
    monkeypatch.undo()
    monkeypatch.setattr(train_kind, "RESUME_EVERY", 2)
    assert [p.action for p in plan_recipe(recipe("w"), resume=True)] == ["run"]
    messages = []
    run_recipe(recipe("w"), resume=True, echo=messages.append)
    assert meta(tmp_path / "w" / "a")["early_stopping"] == want
    assert (tmp_path / "w" / "a" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "ref" / "a" / "adapter_model.safetensors").read_bytes()
    assert not (tmp_path / "w" / "a.ckpt").exists()
    # resume states are no setting of the stage: its hash is the same whatever their interval
    record = json.loads((tmp_path / "w" / "a" / STAGE_RECORD).read_text())
    assert "save_every" not in record["settings"]
    monkeypatch.setattr(train_kind, "RESUME_EVERY", 20)
    assert [(p.hash, p.action) for p in plan_recipe(recipe("w"), resume=True)] == [(record["hash"], "skip")]

    # killed again, then the stage changes (lr): its resume state cannot continue it, the stage starts over
    kill_at_evaluation(monkeypatch, 3)
    with pytest.raises(Killed):
        run_recipe(recipe("v"), echo=lambda s: None)
    monkeypatch.undo()
    monkeypatch.setattr(train_kind, "RESUME_EVERY", 2)
    run_recipe(recipe("v", lr=1.0), resume=True, echo=lambda s: None)
    run_recipe(recipe("fresh", lr=1.0), echo=lambda s: None)
    assert (tmp_path / "v" / "a" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "fresh" / "a" / "adapter_model.safetensors").read_bytes()
    assert not (tmp_path / "v" / "a.ckpt").exists()

    # a stage that asks for its own checkpoints keeps them, as `lorikit train --save-every` does
    run_recipe(recipe("own", save_every=4, resume_state_only=True, max_steps=8, patience=0), echo=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "own" / "a.ckpt").iterdir()) == ["step-000004"]
