"""``lorikit run``: run a recipe (a YAML pipeline of named stages)."""

from __future__ import annotations

from ..utils.outputs import guard_output


def register(sub) -> None:
    p = sub.add_parser("run", help="run a recipe: named stages (train, analyze, ...) in dependency order",
                       description="Run the stages of a recipe YAML in dependency order. With --resume, "
                                   "stages whose output is complete and whose settings (and parents) are "
                                   "unchanged are skipped.")
    p.add_argument("recipe", nargs="?", help="recipe YAML file, or the name of a shipped recipe (lorikit run --list)")
    p.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--resume", action="store_true", help="skip finished, unchanged stages; redo the rest")
    p.add_argument("--overwrite", action="store_true", help="redo every stage, replacing existing outputs")
    p.add_argument("--only", action="append", metavar="STAGE", default=None,
                   help="run only this stage (repeatable); its parents must already be done")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    p.add_argument("--workdir", default=None, help="override the recipe's workdir")
    p.add_argument("--set", action="append", dest="overrides", metavar="[STAGE.]KEY=VALUE", default=[],
                   help="override a setting (repeatable): KEY=VALUE in every stage that has KEY (its own or "
                        "from defaults), STAGE.KEY=VALUE in one stage; VALUE is read as YAML (2 → int)")
    p.add_argument("--model", default=None, help="shorthand for --set model=MODEL (e.g. tiny-random-llama)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UsageError
    from ..pipeline import load_recipe, run_recipe
    from ..pipeline.shipped import describe, resolve_recipe, shipped_recipes

    if args.list:
        for name, path in sorted(shipped_recipes().items()):
            print(f"{name:22s} {describe(path)}")
        return 0
    if not args.recipe:
        raise UsageError("run: give a recipe file or a shipped recipe name (lorikit run --list)")
    overrides = ([f"model={args.model}"] if args.model else []) + list(args.overrides)
    recipe = load_recipe(resolve_recipe(args.recipe), workdir=args.workdir, overrides=overrides)
    guard_output(recipe.workdir, [recipe.source, [s.settings for s in recipe.stages.values()]], flag="workdir")
    run_recipe(recipe, resume=args.resume, overwrite=args.overwrite, only=args.only, dry_run=args.dry_run,
               echo=print)
    return 0
