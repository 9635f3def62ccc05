"""``lorikit demo``: the whole story on the embedded model, offline, as one recipe.

For each method — LoRA (the baseline), LoRI-D, LoRI-S — train one adapter per built-in task
(arithmetic, reverse, compare), merge the three with ``cat`` (the reference's default; weights
0.5 for LoRA/LoRI-D and 0.4 for LoRI-S as the reference's 3-adapter scripts), evaluate every
single adapter and the merged one on each task's held-out ``test`` split, print the table
(rows = method; columns = each task single / merged, and the average retention merged ÷
single) and write the interference report. It is an ordinary recipe run by ``lorikit run``'s
runner, so a second ``lorikit demo`` skips finished stages, and ``--print-recipe`` shows it.

``--osrm`` adds a fourth row: plain LoRA whose A is initialised by OSRM from the other two tasks'
input statistics (``osrm-stats`` on each task's training examples; A rows scaled to PEFT's default
norm so only A's direction differs from the LoRA row), merged with the same ``cat`` at 0.5.

``--sweep W ...`` also merges every method's adapters with ``cat`` at each weight W, evaluates those
merges on every task, and adds the score-vs-weight plot (one line per method and task, the table's
merge included) to the report: three more evals per weight and method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .data import BUILTIN_TASKS
from .errors import UsageError
from .pipeline.recipe import parse_recipe
from .pipeline.runner import run_recipe

DEMO_TASKS = tuple(BUILTIN_TASKS)  # arithmetic, reverse, compare: every built-in task
MERGE_WEIGHT = {"lora": 0.5, "lori-d": 0.5, "lori-s": 0.4}


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults fit in about ten minutes on 2 CPU cores."""

    model: str = field(default="smollm2-135m", metadata={"help": "base model"})
    workdir: str = field(default="runs/demo", metadata={"help": "where stage outputs go"})
    steps: int = field(default=10, metadata={"help": "optimizer steps per training"})
    batch_size: int = field(default=5, metadata={"help": "examples per step (small batches: more updates for the same CPU time)"})
    rank: int = field(default=8, metadata={"help": "adapter rank"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of LoRA and LoRI-D"})
    lori_s_lr: float = field(default=1e-2, metadata={"help": "learning rate of LoRI-S (the reference uses 10x LoRI-D's)"})
    sparsity: float = field(default=0.9, metadata={"help": "LoRI-S mask sparsity"})
    eval_examples: int = field(default=24, metadata={"help": "held-out test examples per task"})
    samples: int = field(default=8, metadata={"help": "examples per task for the output-shift analysis"})
    osrm: bool = field(default=False, metadata={
        "help": "add OSRM (LoRA with A from the other tasks' input statistics) as a fourth method (a statistics pass, 3 more trainings and 6 more evals)"})
    osrm_samples: int = field(default=32, metadata={"help": "examples per task for the OSRM statistics"})
    sweep: list[float] = field(default_factory=list, metadata={
        "help": "extra cat merge weights: each method's merge is also built and evaluated at these weights and "
                "the report plots score vs weight (3 evals per weight and method)"})

    def __post_init__(self):
        bad = [w for w in self.sweep if not 0 < w <= 2]
        if bad:
            raise UsageError(f"--sweep {bad[0]:g}: a merge weight must be in (0, 2]")


def _train_stages(cfg: DemoConfig, stages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Every method's training (and mask, OSRM statistics) stages; returns {method: cat merge weight}."""
    for i, task in enumerate(DEMO_TASKS, 1):
        data = f"builtin:{task}"
        stages[f"lora-{task}"] = {"kind": "train", "data": data, "method": "lora", "seed": i, "lr": cfg.lr}
        stages[f"lori-d-{task}"] = {"kind": "train", "data": data, "method": "lori-d", "seed": i, "lr": cfg.lr}
        stages[f"masks-{task}"] = {"kind": "masks", "adapter": f"$lori-d-{task}", "sparsity": cfg.sparsity}
        stages[f"lori-s-{task}"] = {"kind": "train", "data": data, "method": "lori-s", "lr": cfg.lori_s_lr,
                                    "mask": f"$masks-{task}/masks/{cfg.sparsity}_mask.pt"}
    weights = dict(MERGE_WEIGHT)
    if cfg.osrm:
        weights["osrm"] = MERGE_WEIGHT["lora"]
        stages["osrm-stats"] = {"kind": "osrm-stats", "model": cfg.model, "samples": cfg.osrm_samples,
                                "max_length": 128, "data": {t: f"builtin:{t}" for t in DEMO_TASKS}}
        for i, task in enumerate(DEMO_TASKS, 1):
            stages[f"osrm-{task}"] = {"kind": "train", "data": f"builtin:{task}", "method": "lora", "seed": i,
                                      "lr": cfg.lr, "init": "osrm", "osrm_stats": "$osrm-stats", "task": task,
                                      "osrm_scale": "kaiming"}
    return weights


def demo_recipe(cfg: DemoConfig) -> dict[str, Any]:
    train = {"model": cfg.model, "rank": cfg.rank, "max_steps": cfg.steps, "batch_size": cfg.batch_size,
             "builtin_rows": cfg.steps * cfg.batch_size, "max_length": 384}
    stages: dict[str, dict[str, Any]] = {}
    weights = _train_stages(cfg, stages)

    def add_cat_merge(name: str, method: str, weight: float) -> dict[str, str]:
        """A cat merge of ``method``'s adapters at ``weight`` and its eval on every task: {task: $eval}."""
        stages[name] = {"kind": "merge", "method": "cat", "adapters": [f"${method}-{t}" for t in DEMO_TASKS],
                        "weights": [weight] * len(DEMO_TASKS)}
        evals = {}
        for task in DEMO_TASKS:
            stages[f"eval-{name}-{task}"] = {"kind": "eval", "adapter": f"${name}", "data": f"builtin:{task}:test"}
            evals[task] = f"$eval-{name}-{task}"
        return evals

    methods: dict[str, dict[str, dict[str, str]]] = {}
    sweep: dict[str, dict[float, str]] = {}
    for method, weight in weights.items():
        methods[method] = {"single": {}, "merged": add_cat_merge(f"{method}-merged", method, weight)}
        for task in DEMO_TASKS:
            stages[f"eval-{method}-single-{task}"] = {"kind": "eval", "adapter": f"${method}-{task}",
                                                      "data": f"builtin:{task}:test"}
            methods[method]["single"][task] = f"$eval-{method}-single-{task}"
        if not cfg.sweep:
            continue
        points = {w: add_cat_merge(f"{method}-merged-w{w:g}".replace(".", "p"), method, w)
                  for w in dict.fromkeys(cfg.sweep) if w != weight}
        points[weight] = methods[method]["merged"]
        for task in DEMO_TASKS:
            sweep[f"{method}: {task}"] = {w: evals[task] for w, evals in sorted(points.items())}
    _report_stages(cfg, stages, methods, list(weights), sweep)
    return {"name": "demo", "workdir": cfg.workdir,
            "defaults": {"train": train, "eval": {"model": cfg.model, "task": "builtin", "limit": cfg.eval_examples,
                                                  "batch_size": cfg.eval_examples,
                                                  # built-in answers are ≤ 22 tokens (+ EOS); an untrained
                                                  # model would otherwise ramble to the task's default budget
                                                  "max_new_tokens": 32}},
            "stages": stages}


def _report_stages(cfg: DemoConfig, stages: dict[str, dict[str, Any]], methods: dict, adapters_of: list[str],
                   sweep: dict) -> None:
    """The base model's evals, the score table and the report over ``adapters_of``' adapters."""
    methods_with_base = {"base model": {"single": {}, "merged": {}}}
    for task in DEMO_TASKS:
        stages[f"eval-base-{task}"] = {"kind": "eval", "data": f"builtin:{task}:test"}
        methods_with_base["base model"]["single"][task] = f"$eval-base-{task}"
        methods_with_base["base model"]["merged"][task] = f"$eval-base-{task}"
    methods_with_base.update(methods)
    stages["scores"] = {"kind": "scores", "methods": methods_with_base}
    stages["report"] = {"kind": "analyze",
                        "adapters": [f"{m}/{t}=${m}-{t}" for m in adapters_of for t in DEMO_TASKS],
                        "data": {t: f"builtin:{t}:dev" for t in DEMO_TASKS}, "samples": cfg.samples,
                        "masks": {t: f"$masks-{t}/masks/{cfg.sparsity}_mask.pt" for t in DEMO_TASKS},
                        "scores": "$scores/scores.json"}
    if sweep:
        stages["report"]["sweep"] = sweep


def run_demo(cfg: DemoConfig, fresh: bool = False, echo: Callable[[str], None] | None = None) -> Path:
    """Run (or resume) the demo recipe (``echo``: progress lines, default the log); returns the report folder."""
    recipe = parse_recipe(demo_recipe(cfg), source="lorikit demo", workdir=cfg.workdir)
    run_recipe(recipe, resume=not fresh, overwrite=fresh, **({"echo": echo} if echo else {}))
    return Path(cfg.workdir) / "report"


def demo_table(cfg: DemoConfig) -> str:
    """The single-vs-merged score table (markdown) of a finished demo."""
    return (Path(cfg.workdir) / "scores" / "table.md").read_text()


def recipe_yaml(cfg: DemoConfig) -> str:
    return yaml.safe_dump(demo_recipe(cfg), sort_keys=False, width=120)
