"""A study as an ordinary recipe: train, merge, eval and analyze stages, then one ``study-table`` stage.

Stage names (``R`` = ``METHOD-sSEED``, ``wX`` = a merge weight with ``.`` written ``p``):

- ``R-TASK``: the adapter of one task, trained to convergence (dev loss every ``eval_every`` steps,
  stop on plateau or at ``max_steps``; the best step is kept). LoRI-S adds ``masks-R-TASK`` (from
  ``lori-d-sSEED-TASK``); OSRM shares one ``osrm-stats`` stage.
- ``R-TASK-wX``: that adapter alone, scaled by X (a one-adapter ``cat`` merge); ``R-merged-wX``:
  all tasks' adapters merged with ``cat`` at X; ``R-pair-A-B``: a two-adapter merge at ``pair_weight``.
- ``eval-…``: each of those on the tasks it concerns (the same first ``eval_examples`` test items
  for every adapter, so differences are paired); ``eval-base-TASK``: the base model;
  ``dev-R-merged-wX-TASK``: the merge on ``dev_examples`` dev items of each task, where each run
  chooses its merge weight (the primary endpoint's weight; never the test items).
- ``shift-R``: the interference report of the run's adapters (overlaps, output shift).
- ``continual-…``: first task → second task, for LoRA, LoRI-D and LoRI-S (``continual`` setting).
- ``table``: the study table with intervals, ``study.json`` and the report section.

This module is the one place of the study that knows how each method's adapters are built.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from ..adapters.inits import data_init_names, get_init
from ..adapters.methods import continual_method, find_method, plain_method
from ..data.loading import carve_spec
from .config import CONTINUAL_METHODS, StudyConfig

PLAIN_ARM = "plain-lora"  # the continual arm of plain LoRA fine-tuning (A and B), ``continual.plain_lora``


def tag(w: float) -> str:
    return f"w{w:g}".replace(".", "p")


class _Builder:
    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.stages: dict[str, dict[str, Any]] = {}
        self.tasks = cfg.task_specs

    def eval(self, name: str, adapter: str | None, task: str, dev: bool = False) -> str:
        spec = self.tasks[task]
        data = spec.dev(self.cfg.dev_fraction) if dev else spec.test
        self.stages[name] = {"kind": "eval", "data": data, "task": spec.eval_task, "scoring": spec.scoring,
                             **({"adapter": f"${adapter}"} if adapter else {}),
                             **({"limit": self.cfg.dev_examples} if dev else {}),
                             # absent when off: stages of studies made before it keep their hash
                             **({"shared_prefix": True} if self.cfg.shared_prefix and spec.scoring != "generate" else {})}
        return f"${name}"

    def train(self, name: str, method: str, seed: int, task: str, **extra: Any) -> None:
        """One adapter of ``method`` (the only place that tells methods apart)."""
        cfg, data = self.cfg, self.tasks[task].train
        task_seed = seed * 1000 + list(self.tasks).index(task)
        stage: dict[str, Any] = {"kind": "train", "data": data, "lr": cfg.lr}
        if getattr(find_method(method), "uses_mask", False):
            # a masked method trains the task's mask, extracted from the same seed's adapter of the
            # dense method it continues (LoRI-S from LoRI-D)
            masks, dense = f"masks-{method}-s{seed}-{task}", continual_method(False).name
            self.stages[masks] = {"kind": "masks", "adapter": f"${dense}-s{seed}-{task}", "sparsity": cfg.sparsity}
            stage.update(method=method, lr=cfg.lori_s_lr, mask=f"${masks}/masks/{cfg.sparsity:g}_mask.pt")
        elif method in data_init_names():  # an init's arm: it says what it trains and reads
            stage.update(**get_init(method).study_train(task), seed=task_seed)
        else:
            stage.update(method=method, seed=task_seed)
        if self.tasks[task].max_length:  # only this task's stages change (and their hashes)
            stage["max_length"] = self.tasks[task].max_length
        if "from_adapter" in extra:  # continual: A (and the seed) come from the parent adapter
            stage.pop("seed", None)  # lorikit's continual rule: B trained from the parent, A frozen
        stage.update(extra)
        self.stages[name] = stage

    def single_and_merges(self, run: str) -> dict[str, Any]:
        cfg, tasks = self.cfg, list(self.tasks)
        out: dict[str, Any] = {"single": {}, "merged": {}, "dev_merged": {}, "pairs": {},
                               "trainings": {t: f"${run}-{t}" for t in tasks}}
        for w in cfg.weight_list:
            out["single"][f"{w:g}"] = {}
            merged = f"{run}-merged-{tag(w)}"
            if w in cfg.merge_weights:
                out["merged"][f"{w:g}"] = {}
                self.stages[merged] = {"kind": "merge", "method": "cat", "adapters": [f"${run}-{t}" for t in tasks],
                                       "weights": [w] * len(tasks)}
                if w in cfg.weights:
                    out["dev_merged"][f"{w:g}"] = {t: self.eval(f"dev-{merged}-{t}", merged, t, dev=True)
                                                   for t in tasks}
            for t in tasks:
                single = f"{run}-{t}"
                if w != 1.0:
                    single = f"{run}-{t}-{tag(w)}"
                    self.stages[single] = {"kind": "merge", "method": "cat", "adapters": [f"${run}-{t}"], "weights": [w]}
                out["single"][f"{w:g}"][t] = self.eval(f"eval-{single}-{t}" if w != 1.0 else f"eval-{single}", single, t)
                if w in cfg.merge_weights:
                    out["merged"][f"{w:g}"][t] = self.eval(f"eval-{merged}-{t}", merged, t)
        if cfg.pair_weight is not None:
            pw = cfg.pair_weight
            out["pair_weight"] = f"{pw:g}"
            for a, b in combinations(tasks, 2):
                if len(tasks) == 2:  # the pair is the full merge at pw: reuse its evals
                    out["pairs"][f"{a}+{b}"] = dict(out["merged"][f"{pw:g}"])
                    continue
                pair = f"{run}-pair-{a}-{b}"
                self.stages[pair] = {"kind": "merge", "method": "cat", "adapters": [f"${run}-{a}", f"${run}-{b}"],
                                     "weights": [pw, pw]}
                out["pairs"][f"{a}+{b}"] = {t: self.eval(f"eval-{pair}-{t}", pair, t) for t in (a, b)}
        if cfg.pair_weight is not None:  # the report's measures are set against the pairs' interference
            self.stages[f"shift-{run}"] = {"kind": "analyze", "adapters": {t: f"${run}-{t}" for t in tasks},
                                           "data": {t: carve_spec(self.tasks[t].train, "dev", cfg.dev_fraction)
                                                    for t in tasks}, "samples": cfg.samples}
            out["analysis"] = f"$shift-{run}/analysis.json"
        return out

    def continual(self) -> dict[str, Any]:
        first, then = self.cfg.continual["first"], self.cfg.continual["then"]
        out: dict[str, Any] = {"first": first, "then": then, "methods": {}}
        if self.cfg.continual.get("plain_lora"):  # first: the reference every arm is compared with
            out["methods"][PLAIN_ARM] = self.plain_control(first)
        for method in (m for m in CONTINUAL_METHODS if m in self.cfg.methods):
            # continued, every adapter trains B alone (lorikit's --from rule): an arm whose method trains A
            # too when it trains alone (LoRA) is named for what its continuation does
            arm = method if find_method(method).freezes_a else f"{method} (B only)"
            out["methods"][arm] = {str(seed): self.continued(f"{method}-s{seed}", method, seed, f"{method}-s{seed}")
                                   for seed in self.cfg.seeds}
        return out

    def continued(self, run: str, method: str, seed: int, single: str, **extra: Any) -> dict[str, Any]:
        """``run``'s adapter of the first task trained on from on the second (``extra``: more train
        settings), scored on both tasks before and after; ``single``: the run whose adapter trained on
        the second task alone is set beside it."""
        first, then = self.cfg.continual["first"], self.cfg.continual["then"]
        parent, after = f"{run}-{first}", f"continual-{run}-{first}-{then}"
        self.train(after, method, seed, then, from_adapter=f"${parent}", **extra)
        return {"training": f"${after}",  # its early-stopping record counts in the plateau share
                "before": {first: f"$eval-{parent}", then: self.eval(f"eval-{parent}-on-{then}", parent, then)},
                "after": {t: self.eval(f"eval-{after}-{t}", after, t) for t in (first, then)},
                "single": {then: f"$eval-{single}-{then}"}}

    def plain_control(self, first: str) -> dict[str, Any]:
        """The papers' control: per seed a LoRA adapter of its own on ``first`` (the same settings as the
        method's, under its own name, so that its before and after scores come from one adapter), then
        continued with A and B trained (``--continue-a``)."""
        method, by_seed = plain_method().name, {}
        for seed in self.cfg.seeds:
            own = f"{PLAIN_ARM}-s{seed}"
            self.train(f"{own}-{first}", method, seed, first)
            self.eval(f"eval-{own}-{first}", f"{own}-{first}", first)
            by_seed[str(seed)] = {"first_training": f"${own}-{first}",
                                  **self.continued(own, method, seed, f"{method}-s{seed}", continue_a=True)}
        return by_seed


def study_recipe(cfg: StudyConfig) -> dict[str, Any]:
    """The recipe (as a dict ``parse_recipe`` reads) of the study ``cfg`` describes."""
    b = _Builder(cfg)
    for name in (m for m in cfg.methods if m in data_init_names()):
        b.stages.update(get_init(name).study_stages(cfg, {t: s.train for t, s in b.tasks.items()}))
    runs: dict[str, dict[str, Any]] = {method: {} for method in cfg.methods}
    base = {t: b.eval(f"eval-base-{t}", None, t) for t in b.tasks}
    # Seed-major: every method's run of seed 1, then of seed 2, ...: a study stopped part-way holds
    # whole seeds of every method, which is what a paired, run-level comparison needs.
    for seed in cfg.seeds:
        for method in cfg.methods:
            for task in b.tasks:
                b.train(f"{method}-s{seed}-{task}", method, seed, task)
            runs[method][str(seed)] = b.single_and_merges(f"{method}-s{seed}")
    table: dict[str, Any] = {"kind": "study-table", "runs": runs, "base": base, "primary": cfg.primary_weight,
                             "alpha": cfg.alpha, "equivalence_margin": cfg.equivalence_margin,
                             "learned_at": cfg.learned_at}
    if cfg.continual:
        table["continual"] = b.continual()
    if cfg.resume_from:  # absent otherwise: the tables of studies run in one workdir keep their hash
        table["archive"] = cfg.resume_from
    b.stages["table"] = table
    train_defaults = {"model": cfg.model, "rank": cfg.rank, "dropout": cfg.dropout, "batch_size": cfg.batch_size,
                      "max_steps": cfg.max_steps, "eval_every": cfg.eval_every, "patience": cfg.patience,
                      "min_delta": cfg.min_delta, "dev_fraction": cfg.dev_fraction, "dev_limit": cfg.dev_limit,
                      "builtin_rows": cfg.builtin_rows, "max_length": cfg.max_length}
    eval_defaults = {"model": cfg.model, "limit": cfg.eval_examples, "batch_size": cfg.eval_batch_size,
                     "max_new_tokens": cfg.max_new_tokens,
                     "builtin_rows": max(cfg.eval_examples, cfg.dev_examples, 200)}
    if cfg.shared_prefix:  # absent when off: stages of studies made before it keep their hash
        train_defaults["shared_prefix"] = True
    if cfg.min_steps:  # likewise
        train_defaults["min_steps"] = cfg.min_steps
    if cfg.train_together:  # likewise
        train_defaults["train_together"] = True
    if cfg.dtype != "auto":  # absent by default: `auto` resolves per stage (and is hashed there)
        train_defaults["dtype"] = eval_defaults["dtype"] = cfg.dtype
    return {"name": "study", "workdir": cfg.workdir, "defaults": {"train": train_defaults, "eval": eval_defaults},
            "stages": b.stages}
