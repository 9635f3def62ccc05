"""``lorikit study [STUDY.yaml]``."""

from __future__ import annotations

from ..study import StudyConfig
from ..study.config import SUITES
from ..utils.outputs import guard_output
from ._args import add_dataclass_args


def register(sub) -> None:
    p = sub.add_parser("study", help="tasks x methods x seeds x merge weights, trained to convergence, "
                                     "one table with intervals (resumable)",
                       description="Runs a study (docs/study.md): every adapter trained to a dev-loss plateau, "
                                   "merged and scaled at each weight, evaluated on the same test items; "
                                   "ends in a table with 95% intervals. A second run resumes.")
    p.add_argument("config", nargs="?", default=None, help="study YAML (StudyConfig fields); flags override it")
    add_dataclass_args(p, StudyConfig, skip=("tasks", "continual"))
    p.add_argument("--tasks", nargs="+", default=None, help="built-in task names (a YAML file can give other data); "
                   "default: the --suite's tasks (papers: " + " ".join(SUITES["papers"]) + ")")
    p.add_argument("--fresh", action="store_true", help="redo every stage instead of resuming")
    p.add_argument("--print-recipe", action="store_true", help="print the generated recipe as YAML and exit")
    p.add_argument("--status", action="store_true", help="say where the study in --workdir stands (stages done, how "
                   "trainings stopped, trainings under way, time left at the measured costs) and exit; runs nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from ..study import load_study_config, recipe_yaml, run_study

    names = {f.name for f in dataclasses.fields(StudyConfig)} - {"tasks", "continual"}
    overrides = {n: getattr(args, n) for n in names if hasattr(args, n)}
    if args.tasks:
        overrides["tasks"] = args.tasks
    cfg = load_study_config(args.config, **overrides)
    if args.print_recipe:
        print(recipe_yaml(cfg), end="")
        return 0
    if args.status:
        from ..study.progress import format_status, study_status

        print(format_status(study_status(cfg)))
        return 0
    guard_output(cfg.workdir, [args.config, [(t.train, t.test) for t in cfg.task_specs.values()]], flag="--workdir")
    table = run_study(cfg, fresh=args.fresh, source=args.config or "lorikit study", echo=print)
    print("\n" + (table / "table.md").read_text())
    print(f"lorikit study: table in {table / 'table.md'} (numbers in {table / 'study.json'})")
    return 0
