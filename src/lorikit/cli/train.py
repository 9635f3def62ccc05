"""``lorikit train``: flags (lorikit, underscore or Hugging Face / PEFT spellings) and ``--config FILE``."""

from __future__ import annotations

import os

from ..train.config import SUBCONFIGS, TrainConfig
from ..train.config_file import load_train_config_file
from ..utils.outputs import guard_output
from ._args import add_dataclass_args, dataclass_from_args
from .hf_flags import add_hf_spellings


def register(sub) -> None:
    p = sub.add_parser("train", help="train a LoRA / LoRI adapter on one data set",
                       description="Supervised fine-tuning (response tokens only) of one adapter. Hugging Face "
                                   "spellings (--learning_rate, --output_dir, --lora_r, ...) are accepted too.")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML or JSON file with any train flag as a key (lorikit or Hugging Face spelling); "
                        "flags given on the command line override it")
    add_dataclass_args(p, TrainConfig, group="run")
    for name, cls in SUBCONFIGS.items():  # one option group per sub-config: adapter, osrm (--init osrm)
        add_dataclass_args(p, cls, group=name)
    add_hf_spellings(p)
    p.set_defaults(func=run)


def apply_config_file(args) -> None:
    """Fill every setting not given as a flag from ``--config`` (flags win)."""
    if not args.config:
        return
    run_settings, adapter_settings = load_train_config_file(args.config)
    for key, value in {**run_settings, **adapter_settings}.items():
        if not hasattr(args, key):
            setattr(args, key, value)


def run(args) -> int:
    from ..train import train

    apply_config_file(args)
    parts = {name: dataclass_from_args(cls, args) for name, cls in SUBCONFIGS.items()}
    cfg = dataclass_from_args(TrainConfig, args, **parts)
    guard_output(cfg.out, [args.config, cfg.model, *cfg.inputs()])
    out = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 wrote it
        print(f"lorikit: adapter written to {out}")
    return 0
