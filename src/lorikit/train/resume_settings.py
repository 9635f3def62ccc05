"""Which settings a resume state must share with the run it continues.

A resume state records the run's settings (``settings``); ``--resume`` continues it only with the
same ones, except those in ``RESUMABLE_CHANGES``, which do not alter the numbers. A setting the
state does not name was added to lorikit after it was written and counts at its default.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .config import SUBCONFIGS

# Settings that may change between a run and its resumption: they do not alter the numbers
# (--out may differ: a checkpoint folder can be moved together with its run).
RESUMABLE_CHANGES = {"out", "overwrite", "resume", "resume_from", "save_every", "resume_state_only", "keep_checkpoints",
                     "log_every", "grad_checkpointing", "deterministic", "report_to", "logging_dir"}


class CheckpointMismatch(UsageError):
    """The checkpoint was made with other settings (or another world size): it cannot continue this run."""


def settings(cfg, adapter=None) -> dict[str, Any]:
    """The run's settings as ``{flag name: value}``: the run's own, its sub-configs' and those of
    ``adapter``, the adapter config the run trains (default ``cfg.adapter``; the trainer passes the
    resolved one, with the seed and shape actually used)."""
    flat = {k: v for k, v in cfg.flat().items() if k not in RESUMABLE_CHANGES}
    flat.update(dataclasses.asdict(adapter or cfg.adapter))
    return json.loads(json.dumps(flat, default=str))  # tuples → lists, as they come back from JSON


def setting_defaults(cfg, adapter=None) -> dict[str, Any]:
    """Each setting's default, flat as ``settings`` gives them (the run's class and its sub-configs')."""
    values: dict[str, Any] = {}
    for config in (type(cfg), type(adapter or cfg.adapter), *SUBCONFIGS.values()):
        for f in dataclasses.fields(config):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
    return json.loads(json.dumps(values, default=str))


def check_same_settings(saved: dict[str, Any], cfg, world: int, ckpt: Path, adapter=None) -> None:
    """``saved``: the checkpoint's state. A setting the checkpoint does not name was added to lorikit after
    it was written, and counts as its default — lorikit adds a setting with the default that keeps the
    older behaviour (``--shared-prefix`` off, ``--min-steps`` 0) — so upgrading lorikit mid-run does not
    throw a run's resume states away; any other difference refuses to continue it."""
    current, defaults = settings(cfg, adapter), setting_defaults(cfg, adapter)
    made = {**{key: defaults.get(key) for key in current}, **saved["settings"]}
    for key in made:  # every current setting, then those only the checkpoint names
        if made.get(key) != current.get(key):
            raise CheckpointMismatch(f"--resume: --{key.replace('_', '-')} is {current.get(key)!r} but the checkpoint "
                             f"{ckpt} was made with {made.get(key)!r} (same settings are required)")
    if saved["world_size"] != world:
        raise CheckpointMismatch(f"--resume: world size is {world} but the checkpoint {ckpt} was made with "
                         f"{saved['world_size']} processes")
