"""No code runs from a checkpoint: every file --resume reads is data only (tensors, numbers, strings)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from lorikit.adapters.build import AdapterConfig
from lorikit.errors import UsageError
from lorikit.train import TrainConfig, train


class Planted:
    """What an attacker pickles: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def config(out, **kw) -> TrainConfig:
    return TrainConfig(out=str(out), adapter=AdapterConfig(method="lori-d", rank=4, seed=0), model="tiny-random-llama",
                       data="builtin:compare", builtin_rows=32, batch_size=4, lr=1e-2, max_steps=4, save_every=2, **kw)


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(config(out))
    shutil.rmtree(out)  # only the checkpoints are left, as after a crash
    return out


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng-rank0.pt"])
def test_planted_pickle_does_not_run_and_resume_names_the_file(checkpointed, tmp_path, name):
    out = tmp_path / "run"
    shutil.copytree(Path(f"{checkpointed}.ckpt"), Path(f"{out}.ckpt"))
    marker = tmp_path / "ran"
    planted = Path(f"{out}.ckpt") / "step-000002" / name
    torch.save({"state": Planted(marker)}, planted)
    with pytest.raises(UsageError, match=rf"{name}: refused: holds Python objects"):
        train(config(out, resume=True))
    assert not marker.exists()
    assert not out.exists()  # no fallback to an earlier checkpoint, nothing written


def test_resume_from_untouched_checkpoint_still_works(checkpointed, tmp_path):
    """The RNG states are saved as tensors and numbers and come back exactly."""
    from lorikit.train.rng import rng_state, set_rng_state

    before = rng_state()
    import random

    import numpy as np
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(before)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    out = tmp_path / "run"
    shutil.copytree(Path(f"{checkpointed}.ckpt"), Path(f"{out}.ckpt"))
    assert (train(config(out, resume=True)) / "adapter_model.safetensors").is_file()


def test_sharded_checkpoint_metadata_and_entries_are_read_as_data(tmp_path):
    """The torchrun path (DCP): a planted .metadata or non-tensor entry is refused, never run."""
    from lorikit.train.safe_dcp import SafePlanner, SafeReader

    good = tmp_path / "good"
    dcp.save({"w": torch.arange(4.0), "groups": (0.9, 0.99)}, checkpoint_id=str(good))
    state = {"w": torch.zeros(4), "groups": None}
    dcp.load(state, storage_reader=SafeReader(str(good)), planner=SafePlanner(good))
    assert torch.equal(state["w"], torch.arange(4.0)) and state["groups"] == (0.9, 0.99)

    marker = tmp_path / "ran"
    evil_entry = tmp_path / "entry"
    dcp.save({"w": torch.arange(4.0), "groups": Planted(marker)}, checkpoint_id=str(evil_entry))
    with pytest.raises(BaseException, match="refused: holds Python objects") as info:
        dcp.load({"w": torch.zeros(4), "groups": None}, storage_reader=SafeReader(str(evil_entry)),
                 planner=SafePlanner(evil_entry))
    assert not marker.exists(), info.value

    import pickle
    evil_meta = tmp_path / "meta"
    shutil.copytree(good, evil_meta)
    (evil_meta / ".metadata").write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(UsageError, match=r"\.metadata: refused"):
        SafeReader(str(evil_meta)).read_metadata()
    assert not marker.exists()
