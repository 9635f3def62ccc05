"""``lorikit osrm-transform``."""

from __future__ import annotations

from ..osrm.config import TransformConfig
from ..utils.outputs import guard_output
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("osrm-transform", help="project a LoRA adapter or fine-tuned model onto OSRM's subspace",
                       description="A' = A_osrm, B' = dW A_osrm^T / s: keeps dW's component in OSRM's input "
                                   "subspace; prints the fraction of ||dW||^2 kept.")
    p.add_argument("source", help="LoRA adapter folder or fully fine-tuned model folder")
    add_dataclass_args(p, TransformConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..osrm.transform import transform

    cfg = dataclass_from_args(TransformConfig, args, source=args.source)
    guard_output(cfg.out, [cfg.source, cfg.osrm_stats, cfg.base_model])
    out, _ = transform(cfg, report=print)
    print(f"lorikit: adapter written to {out}")
    return 0
