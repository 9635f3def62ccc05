"""``lorikit demo``."""

from __future__ import annotations

from ..demo import DemoConfig
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole story offline: train LoRA/LoRI-D/LoRI-S on 3 built-in tasks, "
                                    "merge, evaluate, report",
                       description="Runs the built-in demo recipe (resumable: finished stages are skipped).")
    add_dataclass_args(p, DemoConfig)
    p.add_argument("--fresh", action="store_true", help="redo every stage instead of resuming")
    p.add_argument("--print-recipe", action="store_true", help="print the recipe as YAML and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo import demo_table, recipe_yaml, run_demo

    cfg = dataclass_from_args(DemoConfig, args)
    if args.print_recipe:
        print(recipe_yaml(cfg), end="")
        return 0
    report = run_demo(cfg, fresh=args.fresh, echo=print)
    print(f"\nlorikit demo: single vs merged (held-out test split, {cfg.eval_examples} examples per task):\n")
    print(demo_table(cfg))
    print(f"lorikit demo: report in {report / 'report.md'}")
    return 0
