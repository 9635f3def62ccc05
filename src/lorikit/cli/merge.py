"""``lorikit merge``."""

from __future__ import annotations

import dataclasses

from ..merge.config import MergeConfig
from ._args import add_dataclass_args


def register(sub) -> None:
    p = sub.add_parser(
        "merge", help="merge LoRA adapters (cat, linear, task arithmetic, TIES, DARE, magnitude prune, EMR)",
        description="Merge N PEFT LoRA adapters into one adapter, an EMR folder or (--into-model) a full "
                    "model. Options given on the command line override the same keys of --config.")
    p.add_argument("adapters", nargs="*", help="PEFT LoRA adapter folders or Hub ids (or 'adapters:' in --config)")
    p.add_argument("--config", default=None, help="YAML file with the same settings (mergekit style)")
    add_dataclass_args(p, MergeConfig, group="merge")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..merge import merge

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(MergeConfig)
             if f.name != "adapters" and hasattr(args, f.name)}
    if args.adapters:
        given["adapters"] = list(args.adapters)
    cfg = MergeConfig.from_yaml(args.config, given) if args.config else MergeConfig(**given)
    merge(cfg)
    return 0
