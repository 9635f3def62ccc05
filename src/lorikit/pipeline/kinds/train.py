"""``kind: train`` — ``lorikit.train.train`` on one data set.

Settings: every ``lorikit train`` option (TrainConfig fields and those of its sub-configs, underscores
as in Python: ``max_steps``, ``method``, ``rank``, ``seed``, ``osrm_stats``, ...), except ``out`` and ``overwrite``
which the runner sets. Output: a PEFT adapter folder with lorikit.json and train_log.jsonl.

A stage survives a kill: unless its settings ask for their own ``save_every``, it writes a resume
state (``<out>.ckpt/step-N``: trainable and best-so-far tensors, optimizer, scheduler, RNG, dev-loss
record) every ``RESUME_EVERY`` steps, and a rerun of the recipe continues from the newest one, with
the same bytes as an uninterrupted run. A resume state made with other settings (the stage changed)
is discarded and the stage starts over; the state is removed when the stage finishes.

``train_together: true`` (a stage setting, hashed: adapters trained together are equal to solo ones
only to float tolerance) lets the runner train this stage in one process with the other pending
``train_together`` stages whose parents are done and that share the base model and forward
(``lorikit.train.multi.train_many``). Such a joint run writes no resume states: a killed one starts
over from step 0.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import UsageError
from .base import StageKind, build_dataclass

log = logging.getLogger(__name__)
# Steps between resume states: a kill loses at most this many steps, and a state costs one write of
# the trainable tensors, the optimizer's two moments and the best tensors (~40 MB for r 8 on 135M).
RESUME_EVERY = 20


class PreparedTraining(NamedTuple):
    """A validated train stage: its config, whether the resume states it writes are the stage's
    own (removed when it finishes) rather than checkpoints its settings asked for (a user's: kept),
    and whether it may be trained together with other such stages."""

    config: Any  # lorikit.train.config.TrainConfig (imported lazily: the CLI starts without torch)
    owns_resume_states: bool
    together: bool = False


class TrainKind(StageKind):
    name = "train"
    # 2: a run without an explicit seed derives it from its data (it was 0), so such a stage's
    # adapter changed; resume must redo it.
    version = 2
    summary = "train one adapter (lora / lori-d / ...) with lorikit.train"

    def validate(self, stage: str, settings: dict[str, Any], out: Path):
        from ...train.config import SUBCONFIGS, TrainConfig, split_settings

        where = f"stage {stage!r} (train)"
        settings = dict(settings)
        together = settings.pop("train_together", False)
        if not isinstance(together, bool):
            raise UsageError(f"{where}: train_together: {together!r} is not true or false")
        own, parts = split_settings(settings)
        subs = {name: build_dataclass(cls, parts[name], where) for name, cls in SUBCONFIGS.items()}
        # unless the stage asks for its own checkpoints, resume states only: not part of its settings or hash
        resumable = {} if own.get("save_every") else {"save_every": RESUME_EVERY, "resume_state_only": True,
                                                      "keep_checkpoints": 1}
        own = {k: v for k, v in own.items() if k not in resumable}
        cfg = build_dataclass(TrainConfig, own, where, out=str(out), overwrite=True, **resumable, **subs)
        refused = [name for name, _ in cfg.joint_refusals(checkpoints=False)] if together else []
        if refused:  # said before anything runs (train_many names the rest when the joint run starts)
            value = json.dumps(getattr(cfg, refused[0]))  # as the recipe spells it: true, "classification"
            raise UsageError(f"{where}: train_together cannot be combined with {refused[0]}: {value} "
                             "(adapters trained together run one plain forward over all their rows)")
        return PreparedTraining(cfg, owns_resume_states=bool(resumable), together=together)

    def together_key(self, prepared: PreparedTraining) -> tuple | None:
        """Stages with the same key may train in one process (one base model, one forward); None: alone."""
        from ...train.multi import SHARED

        return tuple(getattr(prepared.config, n) for n in SHARED) if prepared.together else None

    def run_together(self, prepared: list[PreparedTraining], outs: list[Path]) -> None:
        from ...train.checkpoint import checkpoint_root
        from ...train.multi import train_many

        for p, out in zip(prepared, outs):
            if p.owns_resume_states:  # a solo run's state cannot be continued jointly: start over
                shutil.rmtree(checkpoint_root(out), ignore_errors=True)
        train_many([_joint(p.config) for p in prepared])

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


def _joint(cfg):
    """``cfg`` as a run of ``train_many`` takes it: no resume states (a joint run is not resumable)."""
    joint = copy.copy(cfg)  # not dataclasses.replace: __post_init__ would carve a dev carve again
    joint.save_every, joint.resume_state_only, joint.resume = 0, False, False
    return joint


KIND = TrainKind()
