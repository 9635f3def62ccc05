"""bench/gpu_check: its dry run (CPU, tiny shapes) trains every method and merges both ways."""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_trains_lora_lori_d_and_lori_s_at_two_shapes():
    rows = gpu_check().run_train(argparse.Namespace(dry_run=True, steps=1, batch=2, seq=8, rank=4))
    assert [(r["shape"], r["method"]) for r in rows] == [(s, m) for s in ("tiny-a", "tiny-b")
                                                         for m in ("lora", "lori-d", "lori-s")]
    assert all(r["tokens_per_s"] > 0 and math.isfinite(r["loss"]) and r["device"] == "cpu" for r in rows)
    by = {(r["shape"], r["method"]): r["trainable"] for r in rows}
    # tiny-a: hidden 64, intermediate 128, kv 32, 2 layers, rank 4
    assert by["tiny-a", "lori-d"] == 2 * 4 * (64 + 32 + 32 + 64 + 128 + 128 + 64)
    assert by["tiny-a", "lora"] == by["tiny-a", "lori-d"] + 2 * 4 * (64 * 6 + 128)
    assert by["tiny-a", "lori-s"] == pytest.approx(0.1 * by["tiny-a", "lori-d"], rel=0.05)


def test_dry_run_merge_agrees_with_the_dense_computation():
    rows = gpu_check().run_merge(argparse.Namespace(dry_run=True))
    assert {r["method"] for r in rows} == {"knots", "core-space"}
    assert all(r["relative_difference"] < 1e-5 for r in rows)


def test_script_without_a_gpu_says_so_and_rejects_unknown_arguments(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    bad = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--fast"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown argument --fast" in bad.stderr
    if torch.cuda.is_available():
        return
    run = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 1 and "no CUDA GPU visible" in run.stderr
    assert not (tmp_path / "o" / "train.json").exists()
