"""``lorikit train``."""

from __future__ import annotations

import os

from ..train.config import SUBCONFIGS, TrainConfig
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("train", help="train a LoRA / LoRI adapter on one data set",
                       description="Supervised fine-tuning (response tokens only) of one adapter.")
    add_dataclass_args(p, TrainConfig, group="run")
    for name, cls in SUBCONFIGS.items():  # one option group per sub-config: adapter, osrm (--init osrm)
        add_dataclass_args(p, cls, group=name)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import train

    parts = {name: dataclass_from_args(cls, args) for name, cls in SUBCONFIGS.items()}
    cfg = dataclass_from_args(TrainConfig, args, **parts)
    out = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 wrote it
        print(f"lorikit: adapter written to {out}")
    return 0
