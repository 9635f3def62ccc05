"""Fault injection: a full disk, SIGKILL at random points, two runs writing to one --out.

Properties: a full disk is one ``lorikit: error:`` line and leaves nothing behind; a killed run
leaves either no output or a complete one (never a half-written adapter), and the next run to the
same ``--out`` succeeds and removes the killed run's temporaries; two concurrent runs to one
``--out`` never mix their outputs: one is refused (lock) or they run one after the other.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorikit.adapters.state import load_adapter
from lorikit.cli import main
from lorikit.train.checkpoint import adapter_checkpoints, only_run_outputs

TINY = "tiny-random-llama"
SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
TD = ["--model", TINY, "--data", "builtin:compare", "--builtin-rows", "16", "--batch-size", "2", "--rank", "4"]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    for name, seed in (("a", "0"), ("b", "1")):
        assert main(["train", *TD, "--max-steps", "1", "--method", "lori-d", "--seed", seed,
                     "--out", str(root / name)]) == 0
    return root


@pytest.fixture
def full_disk(tmp_path):
    """An 8 KiB tmpfs (root only); without it, the disk-full tests patch the writers instead."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mnt)],
                                              capture_output=True).returncode == 0
    yield mnt if ok else None
    if ok:
        subprocess.run(["umount", str(mnt)], check=False)


def _patched_enospc(monkeypatch):
    import errno

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("lorikit.adapters.state.save_file", no_space)
    monkeypatch.setattr("lorikit.adapters.pack.save_file", no_space, raising=False)
    monkeypatch.setattr("lorikit.utils.atomic.os.fsync", no_space)


@pytest.mark.parametrize("command", ["merge", "pack", "unpack", "train"])
def test_disk_full_is_one_line_and_leaves_nothing(adapters, full_disk, tmp_path, monkeypatch, capsys, command):
    where = full_disk
    if where is None:
        if command == "train":
            pytest.skip("no tmpfs: training's writer (PEFT) cannot be patched in place")
        _patched_enospc(monkeypatch)
        where = tmp_path / "patched"
        where.mkdir()
    if command == "unpack":
        assert main(["pack", str(adapters / "a"), "--out", str(tmp_path / "a.lori")]) == 0
    argv = {"merge": ["merge", str(adapters / "a"), str(adapters / "b"), "--method", "cat", "--out", str(where / "o")],
            "pack": ["pack", str(adapters / "a"), "--out", str(where / "o.lori")],
            "unpack": ["unpack", str(tmp_path / "a.lori"), "--out", str(where / "o")],
            "train": ["train", *TD, "--max-steps", "1", "--out", str(where / "o")]}[command]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lorikit: error: ")]
    assert len(lines) == 1 and "cannot write: No space left on device" in lines[0], err
    assert "Traceback" not in err
    assert os.listdir(where) == []


def _kill_after(argv: list[str], delay: float) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "lorikit", *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


def _complete_or_absent(out: Path) -> bool:
    """True when ``out`` is a complete adapter. A training killed mid-run may leave ``out`` holding only
    what a run writes before its end (Hugging Face's layout: --save-every writes ``checkpoint-N`` folders
    into --out during the run, with lorikit's marker file) and, when the kill fell inside a checkpoint's
    write, that write's temporary folder and lock file, which the resumed run removes; each
    ``checkpoint-N`` must then be a complete, loadable adapter, and nothing else may be there."""
    if not out.exists():
        return False
    if not (out / "adapter_config.json").exists():
        assert only_run_outputs(out), sorted(out.iterdir())
        for ckpt in adapter_checkpoints(out):
            load_adapter(ckpt)  # complete and loadable, or this raises
        return False
    load_adapter(out)  # complete and loadable, or this raises
    return True


@pytest.mark.slow
def test_sigkill_during_training_and_merging_never_leaves_a_broken_output(adapters, tmp_path):
    rng = random.Random(14)
    for i in range(2):
        out = tmp_path / f"t{i}"
        argv = ["train", *TD, "--max-steps", "12", "--save-every", "2", "--out", str(out)]
        _kill_after(argv, rng.uniform(4, 14))
        complete = _complete_or_absent(out)
        for ckpt in sorted((tmp_path / f"t{i}.ckpt").glob("step-*")):
            assert (ckpt / "state.json").is_file() and (ckpt / "trainable.safetensors").is_file()
        rc = subprocess.run([sys.executable, "-m", "lorikit", *argv, "--overwrite" if complete else "--resume"],
                            env=ENV, capture_output=True, text=True, timeout=600)
        assert rc.returncode == 0, rc.stderr
        load_adapter(out)
        assert not list(tmp_path.glob(f".t{i}.*")), list(tmp_path.iterdir())  # no temporary, no lock
        assert not list(out.glob(".checkpoint-*")), sorted(out.iterdir())  # nor those of a checkpoint's write
    for i in range(2):
        out = tmp_path / f"m{i}"
        argv = ["merge", str(adapters / "a"), str(adapters / "b"), "--method", "cat", "--out", str(out)]
        _kill_after(argv, rng.uniform(2, 8))
        _complete_or_absent(out)
        if not out.exists():
            assert main(argv) == 0
        load_adapter(out)
        assert not list(tmp_path.glob(f".m{i}.*"))


@pytest.mark.slow
def test_concurrent_runs_to_one_out_never_mix(adapters, tmp_path):
    refs = {}
    for w in ("0.25", "0.75"):  # what each run alone writes
        assert main(["merge", str(adapters / "a"), str(adapters / "b"), "--method", "cat", "--weights", w, "1",
                     "--out", str(tmp_path / f"ref{w}")]) == 0
        refs[w] = load_file(str(tmp_path / f"ref{w}/adapter_model.safetensors"))
    out = tmp_path / "m"
    procs = [subprocess.Popen([sys.executable, "-m", "lorikit", "merge", str(adapters / "a"), str(adapters / "b"),
                               "--method", "cat", "--weights", w, "1", "--out", str(out), "--overwrite"],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in refs]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0 or (code == 1 and "another lorikit run is writing to it" in err), err
    assert any(code == 0 for code, _ in results)
    got = load_file(str(out / "adapter_model.safetensors"))
    assert any(all(torch.equal(got[k], ref[k]) for k in ref) for ref in refs.values())  # one run's, not a mix
    assert not list(tmp_path.glob(".m.*"))


@pytest.mark.slow
def test_concurrent_training_to_one_out_keeps_one_runs_checkpoints(tmp_path):
    out = tmp_path / "t"
    argv = [sys.executable, "-m", "lorikit", "train", *TD, "--max-steps", "400", "--save-every", "2",
            "--keep-checkpoints", "1000", "--out", str(out)]
    first = subprocess.Popen(argv + ["--lr", "1e-3"], env=ENV, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((tmp_path / "t.ckpt").glob("step-*")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # the first run is training and checkpointing
    second = subprocess.run(argv + ["--lr", "2e-3"], env=ENV, capture_output=True, text=True, timeout=600)
    still_running = first.poll() is None
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert still_running, "the first run ended before the second started: the test proves nothing"
    assert second.returncode == 1 and "another lorikit run is writing to it" in second.stderr, second.stderr
    lrs = {json.loads((c / "state.json").read_text())["settings"]["lr"] for c in (tmp_path / "t.ckpt").glob("step-*")}
    assert lrs == {1e-3}
