"""Crash-safe checkpoints, --resume and determinism of single-process training (CPU)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorikit.adapters.build import AdapterConfig
from lorikit.errors import LorikitError, UsageError
from lorikit.train import TrainConfig, train

SRC = str(Path(__file__).resolve().parents[1] / "src")
TRAIN_ARGS = ["--model", "tiny-random-llama", "--method", "lori-d", "--rank", "4", "--data", "builtin:compare",
              "--builtin-rows", "64", "--batch-size", "4", "--lr", "1e-2"]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def config(out, **kw) -> TrainConfig:
    adapter = AdapterConfig(method=kw.pop("method", "lori-d"), rank=4, seed=kw.pop("seed", 0))
    base = dict(model="tiny-random-llama", data="builtin:compare", builtin_rows=64, batch_size=4, lr=1e-2,
                max_steps=6)
    base.update(kw)
    return TrainConfig(out=str(out), adapter=adapter, **base)


def tensors(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def assert_bit_identical(a, b) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert (Path(a) / "adapter_model.safetensors").read_bytes() == (Path(b) / "adapter_model.safetensors").read_bytes()
    assert (Path(a) / "adapter_config.json").read_bytes() == (Path(b) / "adapter_config.json").read_bytes()


def test_same_run_twice_is_bit_identical(tmp_path):
    first = train(config(tmp_path / "a"))
    torch.manual_seed(12345)  # ambient RNG state must not leak into the run
    torch.rand(100)
    second = train(config(tmp_path / "b"))
    assert_bit_identical(first, second)
    assert not torch.equal(tensors(first)["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"],
                           torch.zeros(64, 4))  # it did train


def test_deterministic_flag_changes_nothing_on_cpu(tmp_path):
    """--deterministic only restricts kernels; CPU kernels already are, so the bytes are the same."""
    try:
        first = train(config(tmp_path / "a", max_steps=3, deterministic=True))
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert_bit_identical(first, train(config(tmp_path / "b", max_steps=3)))


def test_checkpoints_are_written_and_pruned(tmp_path):
    stale = tmp_path / "a.ckpt" / ".step-000002.tmp-x1"  # left by a run killed while saving
    stale.mkdir(parents=True)
    (stale / "optimizer.pt").write_bytes(b"half")
    out = train(config(tmp_path / "a", save_every=2, keep_checkpoints=1, max_steps=5))
    ckpt = Path(f"{out}.ckpt")
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-000004"]
    state = json.loads((ckpt / "step-000004" / "state.json").read_text())
    assert state["step"] == 4 and len(state["log"]) == 4
    assert {"trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng-rank0.pt"} <= {
        p.name for p in (ckpt / "step-000004").iterdir()}
    # LoRI-D: only B is trainable state; frozen A is a function of the seed.
    keys = load_file(str(ckpt / "step-000004" / "trainable.safetensors")).keys()
    assert keys and all("lora_B" in k for k in keys)


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_save_every_writes_stock_peft_checkpoint_adapters(tmp_path):
    """<out>/checkpoint-N: an adapter PEFT, lorikit eval and lorikit merge read; pruned like the resume state."""
    from peft import PeftModel

    from lorikit.cli import main as cli_main
    from lorikit.models import load_model

    out = train(config(tmp_path / "a", save_every=2, keep_checkpoints=2, max_steps=7))
    assert visible(out) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "checkpoint-4",
                            "checkpoint-6", "lorikit.json", "train_log.jsonl"]
    assert sorted(p.name for p in Path(f"{out}.ckpt").iterdir()) == ["step-000004", "step-000006"]
    ckpt = out / "checkpoint-6"
    assert visible(ckpt) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "lorikit.json"]
    meta = json.loads((ckpt / "lorikit.json").read_text())
    assert meta["train"]["steps"] == 6 and meta["method"] == "lori-d"
    # the checkpoint's B is the trained one at step 6: the resume state holds the same tensors
    trainable = load_file(str(Path(f"{out}.ckpt") / "step-000006" / "trainable.safetensors"))
    saved = tensors(ckpt)
    for key, value in trainable.items():
        assert torch.equal(saved[key.replace(".default", "")], value), key
    model = PeftModel.from_pretrained(load_model("tiny-random-llama").model, str(ckpt))
    assert any("lora_B" in n for n, _ in model.named_parameters())
    assert cli_main(["eval", "--model", "tiny-random-llama", "--adapter", str(ckpt), "--task", "builtin", "--data",
                     "builtin:compare:test", "--limit", "2", "--builtin-rows", "4", "--max-new-tokens", "2",
                     "--out", str(tmp_path / "eval.json")]) == 0
    assert cli_main(["merge", str(out / "checkpoint-4"), str(ckpt), "--method", "linear", "--weights", "0.5", "0.5",
                     "--out", str(tmp_path / "merged")]) == 0


def test_lori_s_checkpoint_adapters_hold_the_sparse_b(tmp_path):
    """A LoRI-S run's checkpoint-N holds B with the mask applied (the parametrization evaluated)."""
    dense = train(config(tmp_path / "d", max_steps=2))
    assert __import__("lorikit.cli", fromlist=["main"]).main(
        ["masks", str(dense), "--sparsity", "0.5"]) == 0
    mask_file = next((dense / "masks").glob("*.pt"))
    out = train(config(tmp_path / "s", method="lori-s", mask=str(mask_file), save_every=2, max_steps=3))
    saved = tensors(out / "checkpoint-2")
    masks = torch.load(mask_file)
    assert not [k for k in saved if "parametrizations" in k]
    for name, mask in masks.items():
        b = saved[name.replace(".default", "")]
        assert bool((b[~mask] == 0).all()) and bool((b[mask] != 0).any()), name


def test_resume_after_failed_save_is_bit_identical(tmp_path, monkeypatch):
    """A full disk while writing step 4 fails the run, keeps step 2; --resume finishes identically."""
    from lorikit.train import checkpoint

    reference = train(config(tmp_path / "ref"))
    real_write = checkpoint._write

    def failing_write(path, data):  # the temp folder of step 4 is ".step-000004.tmp-*"
        if "step-000004" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "_write", failing_write)
    out = tmp_path / "run"
    with pytest.raises(LorikitError, match="No space left on device.*previous checkpoint is intact"):
        train(config(out, save_every=2))
    ckpt = Path(f"{out}.ckpt")
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-000002"]  # no temp folder left behind
    assert json.loads((ckpt / "step-000002" / "state.json").read_text())["step"] == 2
    assert visible(out) == ["checkpoint-2"]  # the intermediate adapter only: no final one

    monkeypatch.setattr(checkpoint, "_write", real_write)
    resumed = train(config(out, save_every=2, resume=True))
    assert_bit_identical(reference, resumed)
    log = [json.loads(line) for line in (resumed / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_changed_settings(tmp_path):
    out = tmp_path / "run"
    train(config(out, save_every=2, max_steps=4))
    shutil.rmtree(out)  # keep only the checkpoints
    with pytest.raises(UsageError, match=r"--resume: --lr is 0.02 but the checkpoint .*step-000002 was made with 0.01"):
        train(config(out, save_every=2, max_steps=4, lr=2e-2, resume=True))
    with pytest.raises(UsageError, match=r"--resume: --seed is 1 "):
        train(config(out, save_every=2, max_steps=4, seed=1, resume=True))
    # a fresh run (no --resume) must not mix its checkpoints with these
    with pytest.raises(UsageError, match=r"run.ckpt: holds checkpoints of an earlier run \(pass --resume"):
        train(config(out, save_every=2, max_steps=4))
    # settings that do not change the numbers may change
    train(config(out, save_every=3, max_steps=4, log_every=2, resume=True))


def test_resume_states_written_before_a_setting_existed_continue_at_its_default(tmp_path):
    """A study runs for days, and lorikit may be upgraded under it: a resume state that does not name a setting
    added since (``shared_prefix``, ``min_steps``) continues a run that has it at its default, bit for bit,
    and is refused by a run that sets it otherwise."""
    reference = train(config(tmp_path / "ref", max_steps=4))
    out = tmp_path / "run"
    train(config(out, save_every=2, max_steps=4))
    shutil.rmtree(out)  # keep only the resume states
    assert sorted(p.name for p in Path(f"{out}.ckpt").iterdir()) == ["step-000002"]
    state_file = Path(f"{out}.ckpt") / "step-000002" / "state.json"
    state = json.loads(state_file.read_text())
    for added in ("shared_prefix", "min_steps"):
        del state["settings"][added]
    state_file.write_text(json.dumps(state))
    with pytest.raises(UsageError, match=r"--resume: --shared-prefix is True but the checkpoint \S*step-000002 "
                                         r"was made with False"):
        train(config(out, save_every=2, max_steps=4, shared_prefix=True, resume=True))
    resumed = train(config(out, save_every=2, max_steps=4, resume=True))
    log = [json.loads(line) for line in (resumed / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # steps 1-2 from the resume state's log, not run again
    assert_bit_identical(reference, resumed)


def test_grad_checkpointing_gives_the_same_adapter(tmp_path):
    plain = tensors(train(config(tmp_path / "a", max_steps=3)))
    ckpt = tensors(train(config(tmp_path / "b", max_steps=3, grad_checkpointing=True)))
    for key in plain:
        torch.testing.assert_close(ckpt[key], plain[key], rtol=0, atol=1e-6)


def test_kill_9_mid_checkpoint_adapter_leaves_a_resumable_out(tmp_path):
    """A run killed while writing <out>/checkpoint-N leaves lorikit's temporary folder and lock file there:
    they do not block --resume and are cleared; a live writer's files and the user's files stay."""
    import fcntl

    from lorikit.train.checkpoint import clear_run_leftovers, only_run_outputs, write_adapter_checkpoint

    out = tmp_path / "run"
    write_adapter_checkpoint(out, 2, 3, lambda d: (d / "adapter_config.json").write_text("{}"))
    writer = ("import sys, time; from lorikit.train.checkpoint import write_adapter_checkpoint\n"
              "def write(d):\n    (d / 'half').write_bytes(b'x'); print('writing', flush=True); time.sleep(60)\n"
              f"write_adapter_checkpoint({str(out)!r}, 4, 3, write)\n")
    proc = subprocess.Popen([sys.executable, "-c", writer], env=cli_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    # still writing: its folder and lock are not leftovers
    assert not only_run_outputs(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = sorted(p.name for p in out.iterdir() if p.name.startswith(".checkpoint-4"))
    assert left[0] == ".checkpoint-4.lock" and left[1].startswith(".checkpoint-4.tmp-") and len(left) == 2
    assert only_run_outputs(out)

    mine = [out / ".checkpoint-4.tmp-notes", out / "notes.txt"]  # not lorikit's names: never removed
    mine[0].mkdir()
    mine[1].write_text("user")
    assert not only_run_outputs(out)
    mine[0].rmdir()
    mine[1].unlink()
    (out / ".checkpoint-6.tmp-abcd1234").mkdir()  # a live run's checkpoint-6: its lock is held
    held = os.open(out / ".checkpoint-6.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert not only_run_outputs(out)
        clear_run_leftovers(out)
        assert sorted(p.name for p in out.iterdir()) == [
            ".checkpoint-6.lock", ".checkpoint-6.tmp-abcd1234", ".lorikit-output", "checkpoint-2"]
    finally:
        os.close(held)
    clear_run_leftovers(out)
    assert sorted(p.name for p in out.iterdir()) == [".lorikit-output", "checkpoint-2"]


def test_kill_9_then_resume_is_bit_identical(tmp_path):
    """SIGKILL mid-run (after a checkpoint exists), then --resume: same bytes as an uninterrupted run."""
    steps = ["--max-steps", "60", "--save-every", "2"]
    cmd = [sys.executable, "-m", "lorikit", "train", *TRAIN_ARGS, *steps]
    reference = subprocess.run([*cmd, "--out", str(tmp_path / "ref")], env=cli_env(), capture_output=True,
                               text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]

    out = tmp_path / "run"
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = Path(f"{out}.ckpt")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_dir() and any(p.name.startswith("step-") for p in ckpt.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "adapter_config.json").exists()  # at most checkpoint-N adapters, no final one

    resumed = subprocess.run([*cmd, "--out", str(out), "--resume"], env=cli_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    assert_bit_identical(tmp_path / "ref", out)


def test_resume_from_checkpoint_path_continues_from_that_step(tmp_path, monkeypatch, capsys):
    """`lorikit train --resume_from_checkpoint OUT/checkpoint-2` (Hugging Face's form) with a newer
    checkpoint-4 beside it: the run goes on from step 2 and ends with the uninterrupted run's bytes."""
    from lorikit.cli import main
    from lorikit.train import checkpoint

    reference = train(config(tmp_path / "ref", max_steps=8))
    real_write = checkpoint._write

    def failing_write(path, data):
        if "step-000006" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "_write", failing_write)
    out = tmp_path / "run"
    with pytest.raises(LorikitError, match="No space left on device"):
        train(config(out, save_every=2, keep_checkpoints=3, max_steps=8))
    monkeypatch.setattr(checkpoint, "_write", real_write)
    assert visible(out) == ["checkpoint-2", "checkpoint-4"]

    argv = ["train", *TRAIN_ARGS, "--seed", "0", "--max-steps", "8", "--save_steps", "2", "--save_total_limit", "3",
            "--output_dir", str(out)]
    capsys.readouterr()
    assert main([*argv, "--resume_from_checkpoint", str(out / "checkpoint-9")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run.ckpt/step-000009 is missing" in err and "step-000002, step-000004)" in err
    assert not (out / "adapter_config.json").exists()

    assert main([*argv, "--resume_from_checkpoint", str(out / "checkpoint-2")]) == 0
    assert_bit_identical(reference, out)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert json.loads((out / "checkpoint-4" / "lorikit.json").read_text())["train"]["steps"] == 4
    with pytest.raises(UsageError, match=r"--resume-from .*/notes: not a checkpoint folder"):
        train(config(tmp_path / "other", resume_from=str(tmp_path / "notes")))
