"""``lorikit demo``: a small study on the embedded model, offline, that shows an effect with its interval.

Two built-in tasks that read the SAME inputs, choose between the SAME two options and give
opposite answers — ``pair-max`` ("47 23" → "47") and ``pair-min`` ("47 23" → "23") — so their
adapters meet in the same activations and a merge must keep the instruction apart from the input. For LoRA, LoRI-D and LoRI-S (``--osrm``: also OSRM) one adapter per task is trained
to a dev-loss plateau (or the step cap), then each is evaluated alone at full weight, alone scaled
to w, and ``cat``-merged with the other task's adapter at w, on the same held-out test items,
scored by log-likelihood of the options. The table separates what merging costs into
down-weighting loss (single@1 − single@w) and interference (single@w − merged@w), each with a
paired 95 % interval; a difference whose interval contains 0 is reported as not significant.

It is the ``lorikit study`` protocol with demo-sized settings (one seed, one merge weight);
``--full`` runs the full study (4 built-in tasks, 4 methods, 3 seeds, 4 weights, continual,
pairwise prediction). A second run resumes; ``--print-recipe`` shows the recipe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .adapters.methods import method_names
from .errors import UsageError
from .study import StudyConfig, run_study, study_recipe

logger = logging.getLogger(__name__)

DEMO_TASKS = ["pair-max", "pair-min"]


@dataclass
class DemoConfig:
    """Sizes of the demo; with the defaults it took 8 min 58 s on 2 idle CPU cores (bench/RESULTS.md, Demo)."""

    model: str = field(default="smollm2-135m", metadata={"help": "base model"})
    workdir: str = field(default="runs/demo", metadata={"help": "where stage outputs go"})
    steps: int = field(default=12, metadata={"help": "step cap per training (dev loss every --eval-every steps)"})
    eval_every: int = field(default=6, metadata={"help": "dev-loss evaluation interval (steps)"})
    dev_limit: int = field(default=16, metadata={"help": "dev examples per dev-loss evaluation"})
    patience: int = field(default=2, metadata={"help": "dev evaluations without improvement before stopping"})
    batch_size: int = field(default=6, metadata={"help": "examples per step"})
    rank: int = field(default=8, metadata={"help": "adapter rank"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of LoRA and LoRI-D"})
    lori_s_lr: float = field(default=1e-2, metadata={"help": "learning rate of LoRI-S (the reference uses 10x LoRI-D's)"})
    sparsity: float = field(default=0.9, metadata={"help": "LoRI-S mask sparsity"})
    eval_examples: int = field(default=80, metadata={"help": "held-out test items per task"})
    samples: int = field(default=4, metadata={"help": "examples per task for the output-shift analysis"})
    seeds: list[int] = field(default_factory=lambda: [1], metadata={"help": "seeds per (task, method)"})
    osrm: bool = field(default=False, metadata={
        "help": "add OSRM (LoRA with A from the other tasks' input statistics) as a fourth method"})
    osrm_samples: int = field(default=32, metadata={"help": "examples per task for the OSRM statistics"})
    sweep: list[float] = field(default_factory=lambda: [0.5], metadata={
        "help": "cat merge weights w (single@w and merged@w evaluated at each; single@1 always)"})
    full: bool = field(default=False, metadata={
        "help": "run the full study instead (4 built-in tasks x 4 methods x 3 seeds x w 0.3/0.5/0.7/1.0, "
                "continual, pairwise prediction; docs/study.md gives its time)"})

    def __post_init__(self):
        bad = [w for w in self.sweep if not 0 < w <= 2]
        if bad:
            raise UsageError(f"--sweep {bad[0]:g}: a merge weight must be in (0, 2]")


def study_config(cfg: DemoConfig) -> StudyConfig:
    """The study the demo runs."""
    if cfg.full:
        # the study's own defaults (tasks, budget, seeds, weights), plus the continual arm with the
        # papers' control (plain LoRA continual fine-tuning, A and B)
        return StudyConfig(model=cfg.model, workdir=cfg.workdir,
                           continual={"first": "pair-max", "then": "parity", "plain_lora": True})
    methods = list(method_names()) + (["osrm"] if cfg.osrm else [])
    return StudyConfig(model=cfg.model, workdir=cfg.workdir, tasks=list(DEMO_TASKS), methods=methods,
                       seeds=list(cfg.seeds), weights=list(cfg.sweep), pair_weight=None, rank=cfg.rank, lr=cfg.lr,
                       lori_s_lr=cfg.lori_s_lr, sparsity=cfg.sparsity, batch_size=cfg.batch_size,
                       max_steps=cfg.steps, eval_every=min(cfg.eval_every, cfg.steps), patience=cfg.patience,
                       builtin_rows=800, dev_limit=cfg.dev_limit, eval_examples=cfg.eval_examples, max_new_tokens=8,
                       samples=cfg.samples, osrm_samples=cfg.osrm_samples, max_length=384)


def run_demo(cfg: DemoConfig, fresh: bool = False, echo: Callable[[str], None] | None = None) -> Path:
    """Run (or resume) the demo (``echo``: progress lines, default the log); returns the table folder."""
    table = run_study(study_config(cfg), fresh=fresh, source="lorikit demo" + (" --full" if cfg.full else ""),
                      echo=echo)
    logger.info("lorikit demo: report in %s (numbers: %s)", table / "table.md", table / "study.json")
    return table


def demo_table(table: Path) -> str:
    """The markdown table of a finished demo's table folder (what ``run_demo`` returns)."""
    return (Path(table) / "table.md").read_text()


def recipe_yaml(cfg: DemoConfig) -> str:
    return yaml.safe_dump(study_recipe(study_config(cfg)), sort_keys=False, width=120)
