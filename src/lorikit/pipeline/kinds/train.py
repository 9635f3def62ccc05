"""``kind: train`` — ``lorikit.train.train`` on one data set.

Settings: every ``lorikit train`` option (TrainConfig fields and those of its sub-configs, underscores
as in Python: ``max_steps``, ``method``, ``rank``, ``seed``, ``osrm_stats``, ...), except ``out`` and ``overwrite``
which the runner sets. Output: a PEFT adapter folder with lorikit.json and train_log.jsonl.

A stage survives a kill: unless its settings ask for their own ``save_every``, it writes a resume
state (``<out>.ckpt/step-N``: trainable and best-so-far tensors, optimizer, scheduler, RNG, dev-loss
record) every ``RESUME_EVERY`` steps, and a rerun of the recipe continues from the newest one, with
the same bytes as an uninterrupted run. A resume state made with other settings (the stage changed)
is discarded and the stage starts over; the state is removed when the stage finishes.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from .base import StageKind, build_dataclass

log = logging.getLogger(__name__)
# Steps between resume states: a kill loses at most this many steps, and a state costs one write of
# the trainable tensors, the optimizer's two moments and the best tensors (~40 MB for r 8 on 135M).
RESUME_EVERY = 20


class PreparedTraining(NamedTuple):
    """A validated train stage: its config, and whether the resume states it writes are the stage's
    own (removed when it finishes) rather than checkpoints its settings asked for (a user's: kept)."""

    config: Any  # lorikit.train.config.TrainConfig (imported lazily: the CLI starts without torch)
    owns_resume_states: bool


class TrainKind(StageKind):
    name = "train"
    # 2: a run without an explicit seed derives it from its data (it was 0), so such a stage's
    # adapter changed; resume must redo it.
    version = 2
    summary = "train one adapter (lora / lori-d / ...) with lorikit.train"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...train.config import SUBCONFIGS, TrainConfig, split_settings

        own, parts = split_settings(settings)
        where = f"stage {stage!r} (train)"
        subs = {name: build_dataclass(cls, parts[name], where) for name, cls in SUBCONFIGS.items()}
        # unless the stage asks for its own checkpoints, resume states only: not part of its settings or hash
        resumable = {} if own.get("save_every") else {"save_every": RESUME_EVERY, "resume_state_only": True,
                                                      "keep_checkpoints": 1}
        own = {k: v for k, v in own.items() if k not in resumable}
        cfg = build_dataclass(TrainConfig, own, where, out=str(out), overwrite=True, **resumable, **subs)
        return PreparedTraining(cfg, owns_resume_states=bool(resumable))

    def resolved(self, settings: dict[str, Any], prepared: PreparedTraining) -> dict[str, Any]:
        return super().resolved(settings, prepared.config)

    def run(self, prepared: PreparedTraining, out: Path) -> None:
        from ...train import train
        from ...train.checkpoint import CheckpointMismatch, NoUsableCheckpoint, checkpoint_root, checkpoints

        states = checkpoint_root(out)
        resumed = False
        if checkpoints(states):
            try:
                continued = copy.copy(prepared.config)  # not dataclasses.replace: __post_init__ would carve a dev carve again
                continued.resume = True
                train(continued)
                resumed = True
            except (CheckpointMismatch, NoUsableCheckpoint) as exc:
                log.warning("%s: cannot continue (%s); training from step 0", states, exc)
        if not resumed:
            train(prepared.config)  # with overwrite: an unusable resume state is discarded
        if prepared.owns_resume_states:
            shutil.rmtree(states, ignore_errors=True)  # this stage's own, and finished with

    def complete(self, out: Path) -> bool:
        return all((out / f).is_file() for f in ("adapter_config.json", "adapter_model.safetensors", "lorikit.json"))


KIND = TrainKind()
