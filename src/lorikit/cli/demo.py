"""``lorikit demo``."""

from __future__ import annotations

from ..demo import DemoConfig
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("demo", help="a small study offline: LoRA/LoRI-D/LoRI-S on two tasks sharing inputs, "
                                    "down-weighting vs interference with 95%% intervals",
                       description="Runs the demo study (resumable: finished stages are skipped); --full runs "
                                   "the full study.")
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
    table = run_demo(cfg, fresh=args.fresh, echo=print)
    print("\n" + demo_table(table))
    print(f"lorikit demo: report in {table / 'table.md'} (numbers: {table / 'study.json'})")
    return 0
