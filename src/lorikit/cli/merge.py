"""``lorikit merge``: a thin layer over ``lorikit.merge.merge``.

The method choices and each method's own options (``--density``, ``--inner``, ...) come from the
merge registry; nothing here lists methods or parameters by hand.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..merge.config import MergeConfig
from ..merge.registry import all_params, methods
from ..utils.outputs import guard_output
from ._args import add_dataclass_args


def method_help() -> str:
    parts = []
    for name, m in methods().items():
        aliases = f" (also {', '.join(m.aliases)})" if m.aliases else ""
        parts.append(f"{name}{aliases}")
    return "merge method: " + ", ".join(parts)


def add_param_args(parser: argparse.ArgumentParser) -> None:
    """One option per registered method parameter, help naming the methods that read it."""
    group = parser.add_argument_group("method options (each method reads its own; see docs/merge.md)")
    readers: dict[str, list[str]] = {}
    for name, m in methods().items():
        for p in m.params:
            readers.setdefault(p.name, []).append(name)
        for alias in m.param_aliases:
            readers.setdefault(alias, []).append(name)
    for p in all_params().values():
        flags = [p.flag] + [f"--{a.replace('_', '-')}" for a in (p.name, *p.aliases) if a != (p.cli or p.name)]
        kwargs = {"dest": f"param_{p.name}", "default": argparse.SUPPRESS, "metavar": p.name.upper(),
                  "help": f"{p.help}; range {p.range_text().replace(chr(92), '')}, default {p.default_text} "
                          f"({', '.join(readers[p.name])})"}
        if p.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = p.type
        group.add_argument(*flags, **kwargs)


def register(sub) -> None:
    p = sub.add_parser(
        "merge", help="merge LoRA adapters (" + ", ".join(methods()) + ")",
        description="Merge N PEFT LoRA adapters into one adapter, an EMR folder or (--into-model) a full "
                    "model. Options given on the command line override the same keys of --config.")
    p.add_argument("adapters", nargs="*", help="PEFT LoRA adapter folders or Hub ids (or 'adapters:' in --config)")
    p.add_argument("--config", default=None, help="YAML file with the same settings, or a mergekit YAML "
                                                  "(merge_method, models, parameters, base_model)")
    add_dataclass_args(p, MergeConfig, group="merge", skip=("method",))
    p.add_argument("--method", dest="method", default=argparse.SUPPRESS, help=method_help() + " (default: cat)")
    add_param_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..merge import merge

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(MergeConfig)
             if f.name not in ("adapters", "method_params") and hasattr(args, f.name)}
    given["method_params"] = {k[len("param_"):]: v for k, v in vars(args).items() if k.startswith("param_")}
    if args.adapters:
        given["adapters"] = list(args.adapters)
    cfg = MergeConfig.from_yaml(args.config, given) if args.config else MergeConfig(**given)
    guard_output(cfg.out, [args.config, cfg.adapters, cfg.model, cfg.base_model])
    out = merge(cfg)
    print(f"lorikit: written to {out}")
    return 0
