"""``lorikit osrm-stats``."""

from __future__ import annotations

from ..osrm.config import StatsConfig
from ..utils.outputs import guard_output
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("osrm-stats", help="record per-task input statistics of the target modules (OSRM)",
                       description="Mean and second moment of every target module's input over real tokens, "
                                   "per task, on the pretrained model; streamed in float64.")
    add_dataclass_args(p, StatsConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..osrm.collect import MANIFEST, collect_stats

    cfg = dataclass_from_args(StatsConfig, args)
    guard_output(cfg.out, [cfg.model, cfg.data])
    out = collect_stats(cfg)
    manifest = json.loads((out / MANIFEST).read_text())
    groups = len(manifest["dims"])
    print(f"lorikit: statistics of {len(manifest['tasks'])} task(s), {len(manifest['modules'])} modules "
          f"({groups} distinct inputs, {manifest['bytes_per_task'] / 2**20:.1f} MiB per task) written to {out}")
    return 0
