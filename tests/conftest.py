"""Shared fixtures: everything runs on tiny-random-llama (seconds, no downloads)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# `--dtype auto` follows the CPU (bfloat16 where it is native): pin it to float32 so results do not
# depend on the machine; tests of the bf16 default set LORIKIT_CPU_BF16=1 themselves.
os.environ["LORIKIT_CPU_BF16"] = "0"

TINY = "tiny-random-llama"


@pytest.fixture
def tiny_bundle():
    from lorikit.models import load_model

    return load_model(TINY)


@pytest.fixture
def make_adapter(tmp_path):
    """Train a tiny adapter for a few steps: ``make_adapter(method='lori-d', data='builtin:compare', ...)``."""
    from lorikit.adapters.build import AdapterConfig
    from lorikit.osrm.init import OsrmInitConfig
    from lorikit.train import TrainConfig, train

    counter = {"n": 0}

    def _make(method: str = "lori-d", data: str = "builtin:compare", rank: int = 4, seed: int = 0,
              steps: int = 3, lr: float = 1e-2, out=None, **train_kwargs):
        counter["n"] += 1
        out = out or tmp_path / f"adapter{counter['n']}-{method}"
        adapter_kwargs = {k: train_kwargs.pop(k) for k in ("a_init", "target_modules", "alpha") if k in train_kwargs}
        osrm_kwargs = {k: train_kwargs.pop(k) for k in ("osrm_stats", "task", "osrm_mode", "osrm_scale")
                       if k in train_kwargs}
        cfg = TrainConfig(out=str(out), model=TINY, data=data, max_steps=steps, lr=lr, batch_size=4,
                          builtin_rows=64, adapter=AdapterConfig(method=method, rank=rank, seed=seed, **adapter_kwargs),
                          osrm=OsrmInitConfig(**osrm_kwargs), **train_kwargs)
        return train(cfg)

    return _make
