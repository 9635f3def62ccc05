"""``lorikit train``."""

from __future__ import annotations

import os

from ..adapters.build import AdapterConfig
from ..train.config import TrainConfig
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("train", help="train a LoRA / LoRI adapter on one data set",
                       description="Supervised fine-tuning (response tokens only) of one adapter.")
    add_dataclass_args(p, TrainConfig, group="run")
    add_dataclass_args(p, AdapterConfig, group="adapter")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import train

    adapter = dataclass_from_args(AdapterConfig, args)
    cfg = dataclass_from_args(TrainConfig, args, adapter=adapter)
    out = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 wrote it
        print(f"lorikit: adapter written to {out}")
    return 0
