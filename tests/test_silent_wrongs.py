"""The smaller silent wrongs of issue 30: each is now refused with one clear line, or works as documented."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lorikit.cli import main
from lorikit.errors import UsageError

TINY = "tiny-random-llama"
SRC = str(Path(__file__).resolve().parents[1] / "src")
TRAIN = ["train", "--model", TINY, "--data", "builtin:compare", "--builtin-rows", "16", "--batch-size", "4",
         "--method", "lori-d", "--rank", "2"]


def test_study_held_out_check_compares_resolved_paths(tmp_path, monkeypatch):
    from lorikit.study.config import parse_task

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"instruction": "1+1", "output": "2"}\n')
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "d.jsonl")
    for train, test in [("./d.jsonl", "d.jsonl"), ("d.jsonl", "link.jsonl"), (str(tmp_path / "d.jsonl"), "d.jsonl")]:
        with pytest.raises(UsageError, match=f"test '{test}' overlaps train '{train}'"):
            parse_task("t", {"train": train, "test": test, "task": "exact"}, "study.yaml", "generate")
    # the complementary carves of one file, spelled two ways, are fine
    parse_task("t", {"train": "./d.jsonl?split=train", "test": "d.jsonl?split=dev", "task": "exact"}, "s", "generate")


def test_study_checks_every_tasks_test_rows_before_the_first_stage(tmp_path):
    from lorikit.study import StudyConfig, run_study

    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("".join(json.dumps({"question": f"{i}+1?", "answer": f"#### {i + 1}"}) + "\n" for i in range(20)))
    cfg = StudyConfig(model=TINY, workdir=str(tmp_path / "w"), tasks={
        "pair-add": None, "g": {"train": f"{gsm}?split=train", "test": f"{gsm}?split=dev", "task": "exact"}})
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=r"task 'g' \(task: exact\): .*gsm.jsonl.*needs fields"):
        run_study(cfg)
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "w").exists()  # no stage ran


def exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


def test_two_spellings_of_one_flag_with_different_values_are_refused(tmp_path, capsys):
    assert exit_code([*TRAIN, "--out", str(tmp_path / "t"), "--output_dir", str(tmp_path / "u")]) == 2
    err = capsys.readouterr().err
    assert "--output_dir" in err and "conflicts with --out" in err and err.count("\n") == 1
    assert exit_code([*TRAIN, "--max_steps", "3", "--max-steps", "2", "--out", str(tmp_path / "t")]) == 2
    assert "--max-steps 2 conflicts with --max_steps 3" in capsys.readouterr().err
    assert not (tmp_path / "t").exists() and not (tmp_path / "u").exists()
    from lorikit.cli import build_parser

    same = build_parser().parse_args(["train", "--lr", "0.1", "--learning_rate", "0.1", "--out", "o"])
    assert same.lr == 0.1  # the same value twice is no conflict


def test_log_every_thins_the_log_to_interval_means(tmp_path):
    assert main([*TRAIN, "--max-steps", "5", "--out", str(tmp_path / "every")]) == 0
    assert main([*TRAIN, "--max-steps", "5", "--logging_steps", "2", "--out", str(tmp_path / "two")]) == 0
    every = [json.loads(x) for x in (tmp_path / "every/train_log.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two/train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in every] == [1, 2, 3, 4, 5] and [r["step"] for r in two] == [2, 4, 5]
    assert two[0]["loss"] == pytest.approx((every[0]["loss"] + every[1]["loss"]) / 2, rel=1e-9)
    assert two[2]["loss"] == pytest.approx(every[4]["loss"], rel=1e-9)
    assert two[1]["tokens"] == every[2]["tokens"] + every[3]["tokens"]
    meta = json.loads((tmp_path / "two/lorikit.json").read_text())
    assert meta["train"]["steps"] == 5 and meta["hyperparameters"]["log_every"] == 2


def test_eval_refuses_an_adapter_named_base(tmp_path, capsys):
    assert main(["eval", "--model", TINY, "--task", "builtin", "--data", "builtin:compare", "--limit", "2",
                 "--adapters", f"base={tmp_path}"]) == 2
    assert "the name 'base' means the model without an adapter" in capsys.readouterr().err


def test_eval_with_a_corrupt_adapter_is_one_line(make_adapter, tmp_path, capsys):
    good = make_adapter(method="lori-d", rank=2, steps=1)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 2')
    (bad / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    code = main(["eval", "--model", TINY, "--task", "builtin", "--data", "builtin:compare", "--limit", "2",
                 "--adapters", f"good={good}", f"bad={bad}"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and err.count("lorikit: error:") == 1 and "bad" in err, err


def fresh_peft_model():
    from peft import LoraConfig, get_peft_model

    from lorikit.models import load_model

    return get_peft_model(load_model(TINY).model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))


def test_osrm_init_with_a_missing_statistic_is_a_clear_error():
    from lorikit.integrations import initialize_osrm_weights
    from lorikit.integrations.osrm import TaskStats

    model = fresh_peft_model()
    with pytest.raises(UsageError, match=r"stats_or_dataloaders\['b'\]: NoneType is neither TaskStats nor"):
        initialize_osrm_weights(model, {"a": [], "b": None}, "a")
    stats = TaskStats(tensors={"m.mean": torch.zeros(4)}, group_of={"m": "m"}, second_moment=False)
    with pytest.raises(UsageError, match="no second_moment recorded for module 'm'.*use mode='mean'"):
        stats.get("m", "second_moment")


def test_masks_of_an_untrained_adapter_are_refused():
    from lorikit.integrations import extract_masks

    with pytest.raises(UsageError, match="every lora_B entry is zero .*untrained"):
        extract_masks(fresh_peft_model(), 0.9)


def test_sigterm_removes_the_lock_and_the_temporary_folder(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lorikit", *TRAIN, "--max-steps", "100000", "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".run.lock"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not lock.exists():
        time.sleep(0.05)
    assert lock.exists(), proc.stderr.read() if proc.poll() is not None else "no lock"
    time.sleep(1.0)  # inside the training loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "lorikit: terminated" in err, err[-2000:]
    assert not lock.exists() and not out.exists() and list(tmp_path.iterdir()) == []
