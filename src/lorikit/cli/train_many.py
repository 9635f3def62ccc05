"""``lorikit train-many A.yaml B.yaml ...``: several adapters in one process over one copy of the base model."""

from __future__ import annotations

from ..train.config_file import train_config_from_file
from ..utils.outputs import guard_output


def register(sub) -> None:
    p = sub.add_parser("train-many", help="train several adapters together over one base model (one config each)",
                       description="Train several adapters in one process: the base model is loaded once and each "
                                   "step runs the runs' batches through it together (mixed-adapter batches); each "
                                   "adapter is written as `lorikit train --config FILE` would write it, and equals it "
                                   "within float tolerance (in float32; a bfloat16 base's rounding differs with the "
                                   "batch's shape). The runs must share --model, --dtype, --device, --bf16, --logits "
                                   "and --deterministic. On a CPU at one thread it is not faster (bench/RESULTS.md).")
    p.add_argument("configs", nargs="+", metavar="CONFIG",
                   help="a `lorikit train --config` file (YAML or JSON) per adapter, each with its own out")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import train_many

    configs = [train_config_from_file(path) for path in args.configs]
    for path, cfg in zip(args.configs, configs):
        guard_output(cfg.out, [path, cfg.model, *cfg.inputs()])
    for out in train_many(configs):
        print(f"lorikit: adapter written to {out}")
    return 0
