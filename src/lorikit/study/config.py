"""Typed configuration of a study (``lorikit study CONFIG.yaml``); each field's help is its ``--flag`` help."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..adapters.inits import data_init_names
from ..adapters.methods import continual_method, method_names, plain_method
from ..data.builtin import TASKS as BUILTIN
from ..data.loading import carve_spec, source_of
from ..errors import UsageError
from ..models.device import DTYPES
from ..osrm import registered_init  # noqa: F401 (registers --init osrm, an arm a study can compare)

# the arms a study compares: the adapter methods, and each data-driven init of A (OSRM: LoRA from its A)
METHODS = (*method_names(), *data_init_names())
CONTINUAL_METHODS = method_names()
CHOICE_BUILTINS = tuple(name for name, task in BUILTIN.items() if task.choice)  # answers from fixed options
SCORINGS = ("generate", "loglik")
# Named task suites (``--suite``). ``papers``, the default, is the LoRI / OSRM papers' setting:
# different tasks whose inputs differ in kind (numbers, word lists, reviews, Python literals) and
# whose skills and answer formats differ. ``conflict`` is a stress test outside both papers'
# claims: one family whose tasks read the same inputs and give conflicting answers.
SUITES = {"papers": ("pair-max", "words-reverse", "parity", "py-type"),
          "conflict": ("pair-add", "pair-max", "pair-min", "pair-greater")}
DEFAULT_SUITE = "papers"
DEFAULT_TASKS = SUITES[DEFAULT_SUITE]
DEV_WEIGHT = "dev"  # primary endpoint at the merge weight chosen on dev data


@dataclass(frozen=True)
class StudyTask:
    """One task: where its training rows come from, its test rows, and how eval scores them."""

    name: str
    train: str
    test: str
    eval_task: str = "builtin"
    scoring: str = "generate"  # loglik: the most likely option (choice tasks only)
    max_length: int | None = None  # this task's training rows cut to this many tokens (else the study's)

    def dev(self, fraction: float) -> str:
        """Held-out rows for choices made on data (the merge weight): a built-in task's own dev split,
        else the training source's dev carve (the one early stopping reads), never the test rows."""
        if self.test.startswith("builtin:"):
            return self.test.rpartition(":")[0] + ":dev"
        return carve_spec(self.train, "dev", fraction)


def parse_task(name: str, spec: Any, where: str, scoring: str) -> StudyTask:
    """``arithmetic`` (a built-in name) or ``{train: SPEC, test: SPEC, task: nlu|gsm8k|exact|safety[, scoring,
    max_length]}``.
    ``scoring`` (the study's) applies to choice tasks: built-in ones with options, and ``task: nlu``."""
    if spec is None:
        if name not in BUILTIN:
            raise UsageError(f"{where}: task {name!r} is not built in ({', '.join(BUILTIN)}); "
                             "give {train: SPEC, test: SPEC, task: EVAL_TASK} for other data")
        choice = name in CHOICE_BUILTINS
        return StudyTask(name, f"builtin:{name}", f"builtin:{name}:test", "builtin", scoring if choice else "generate")
    keys = {"train", "test", "task", "scoring", "max_length"}
    if not isinstance(spec, dict) or not {"train", "test"} <= set(spec) or set(spec) - keys:
        raise UsageError(f"{where}: task {name!r}: expected {{train: SPEC, test: SPEC[, task: EVAL_TASK, scoring: "
                         f"generate|loglik, max_length: TOKENS]}}, got {spec!r}")
    max_length = spec.get("max_length")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0):
        raise UsageError(f"{where}: task {name!r}: max_length must be a positive number of tokens, got {max_length!r}")
    train, test = str(spec["train"]), str(spec["test"])
    check_held_out(name, train, test, where)
    task = str(spec.get("task", "builtin"))
    default = scoring if task == "nlu" or (task == "builtin" and test.split(":")[1:2] in
                                           [[c] for c in CHOICE_BUILTINS]) else "generate"
    return StudyTask(name, train, test, task, str(spec.get("scoring", default)), max_length)


def resolved_spec(spec: str) -> str:
    """``spec`` with its file source as a real path (built-in and Hub sources as given)."""
    source = source_of(spec)
    if source.startswith("builtin:") or not os.path.exists(source):
        return spec
    return os.path.realpath(source) + spec[len(source):]


def check_held_out(name: str, train: str, test: str, where: str) -> None:
    """Refuse test rows the training could see: a test carved out of the training source must be
    trained on the complementary carve (``FILE?split=dev…`` tested, ``FILE?split=train…`` trained)."""
    given_train, given_test = train, test
    train, test = resolved_spec(train), resolved_spec(test)  # ./d.jsonl, d.jsonl and a symlink are one file
    if source_of(train) != source_of(test) or source_of(test).startswith("builtin:"):
        return  # different files, or built-in splits (hash-disjoint by construction)
    head, sep, query = test.rpartition("?")
    complement = f"{head}?{query.replace('split=dev', 'split=train')}" if sep and "split=dev" in query else None
    if complement is None or not (train == complement or train.startswith(complement + "?")):
        as_given = complement and source_of(given_test) + complement[len(source_of(test)):]
        fix = f"; train on {as_given!r}" if complement else "; carve the test rows with ?split=dev"
        raise UsageError(f"{where}: task {name!r}: test {given_test!r} overlaps train {given_train!r} "
                         f"(same source){fix}")


@dataclass
class StudyConfig:
    """Tasks × methods × seeds × merge weights, each adapter trained to convergence on a dev split."""

    model: str = field(default="smollm2-135m", metadata={"help": "base model"})
    workdir: str = field(default="runs/study", metadata={"help": "where stage outputs go (resumable)"})
    resume_from: str | None = field(default=None, metadata={
        "help": "a committed progress file of this study (bench/bench_study.py --progress): the evals and "
                "trainings it holds, with the stage hashes they still have, are not run again, so another machine "
                "resumes the study without its workdir; what the file lacks runs here with everything it is "
                "computed from"})
    suite: str = field(default=DEFAULT_SUITE, metadata={
        "help": "named task suite used when no tasks are given: papers (different inputs, the LoRI / OSRM "
                "papers' setting: " + ", ".join(SUITES["papers"]) + ") or conflict (a stress test: one family "
                "reading the same inputs with conflicting answers: " + ", ".join(SUITES["conflict"]) + ")",
        "choices": tuple(SUITES)})
    tasks: Any = field(default=None, metadata={
        "help": "built-in task names, or (in the YAML file) a mapping NAME: {train, test, task}; "
                "default: the suite's tasks"})
    methods: list[str] = field(default_factory=lambda: list(METHODS), metadata={"help": "adapter methods compared"})
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3], metadata={
        "help": "seeds per (task, method): LoRI's A, LoRA's init, data order and dropout"})
    weights: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 1.0], metadata={
        "help": "cat merge weights; at each, the merge and every single adapter scaled alone are evaluated, "
                "and the merge on dev data (each run's weight is chosen there)"})
    primary: str = field(default=DEV_WEIGHT, metadata={
        "help": "the primary endpoint, declared before the study runs: merged accuracy over all tasks' test "
                "items of each method minus the first method's, at the merge weight each run chose on dev "
                "data ('dev') or at one of 'weights' (a number)"})
    equivalence_margin: float = field(default=0.05, metadata={
        "help": "a difference counts as 'equivalent' (no difference) only when a TOST at this margin "
                "(accuracy points as a fraction) rejects both one-sided nulls; else it is 'inconclusive'"})
    alpha: float = field(default=0.05, metadata={"help": "level of every test and (1 - alpha) interval"})
    learned_at: float = field(default=0.9, metadata={
        "help": "a training run learned a task when its single adapter (w = 1) scores at least this on the "
                "task's test items; the table counts such runs per method and task, checks the suite's premise "
                "(each task learned: Wilson lower bound of the runs' pooled items at least this, over >= 3 runs) "
                "and compares continual forgetting again on the runs that learned both tasks"})
    dev_examples: int = field(default=100, metadata={
        "help": "dev items per task on which each run chooses its merge weight"})
    pair_weight: float | None = field(default=1.0, metadata={
        "help": "weight of the pairwise merges whose interference the report's measures should predict "
                "(null/omitted in YAML = no pairwise merges)"})
    rank: int = field(default=8, metadata={"help": "adapter rank"})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (varies with the seed)"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of LoRA, LoRI-D and OSRM"})
    lori_s_lr: float = field(default=1e-2, metadata={"help": "learning rate of LoRI-S (the reference: 10x LoRI-D's)"})
    sparsity: float = field(default=0.9, metadata={"help": "LoRI-S mask sparsity"})
    batch_size: int = field(default=8, metadata={"help": "training examples per step"})
    max_steps: int = field(default=300, metadata={"help": "step cap of every training run"})
    eval_every: int = field(default=25, metadata={"help": "dev loss every N steps (same rule for every method)"})
    patience: int = field(default=3, metadata={"help": "dev evaluations without improvement before stopping"})
    min_delta: float = field(default=1e-3, metadata={
        "help": "a dev loss counts as an improvement only when it beats the best by more than this (absolute, "
                "as HF's early_stopping_threshold); with 0, a loss creeping down by 1e-5 near zero never plateaus "
                "and every well-learned adapter runs to the cap"})
    min_steps: int = field(default=0, metadata={
        "help": "no plateau stops a training run before this step (0: from the first evaluation); for tasks "
                "whose dev loss stays at chance for a while before they are learned"})
    dev_fraction: float = field(default=0.1, metadata={"help": "share of each task's training rows carved out as dev"})
    dev_limit: int = field(default=64, metadata={"help": "dev examples per dev-loss evaluation"})
    builtin_rows: int = field(default=2000, metadata={"help": "training rows generated per built-in task"})
    max_length: int = field(default=384, metadata={"help": "max tokens per training example"})
    shared_prefix: bool = field(default=True, metadata={
        "help": "train and score (loglik) with --shared-prefix: the prompt tokens every row of a batch shares "
                "(the template's preamble) run once per batch (~2x fewer tokens; LoRA dropout draws one mask for "
                "them per batch); "
                "false: every row runs in full, as studies did before it existed"})
    train_together: bool = field(default=False, metadata={
        "help": "train the adapters whose inputs are ready in one process over one copy of the base model "
                "(lorikit train-many: the frozen GEMMs run once over every adapter's rows); equal to solo runs "
                "to float tolerance, not bitwise, so it is part of every training's hash; needs shared_prefix: "
                "false, writes no resume states (a killed joint run starts over), and measured no gain on 2 CPU "
                "cores at one thread per process — for devices that small batches leave idle"})
    eval_examples: int = field(default=200, metadata={"help": "test items per task (fewer if the task has fewer)"})
    eval_batch_size: int = field(default=32, metadata={"help": "sequences decoded together"})
    max_new_tokens: int = field(default=32, metadata={"help": "generation budget per answer"})
    samples: int = field(default=16, metadata={"help": "examples per task for the output-shift measures"})
    osrm_samples: int = field(default=64, metadata={"help": "examples per task for the OSRM statistics"})
    scoring: str = field(default="loglik", metadata={
        "help": "choice tasks (built-in compare/pair-max/pair-min/pair-greater, nlu data): loglik (most likely option, "
                "one forward per item) or generate (decode and extract the answer); other tasks always generate",
        "choices": SCORINGS})
    continual: Any = field(default=None, metadata={
        "help": "(YAML) {first: TASK, then: TASK}: train on first, continue on then; before/after scores. "
                "Add plain_lora: true for the papers' control: LoRA adapters of their own on first, continued "
                "on then with A and B trained (--continue-a), the reference every arm's forgetting is compared "
                "with (without it the LoRA arm continues B only, A frozen, and is the reference)"})
    workers: int = field(default=1, metadata={
        "help": "processes that run the study side by side (each takes the next (seed, method) group of stages "
                "from one queue), each with cores/N "
                "threads; the stages and the table are the ones one process makes (docs/study.md)"})
    dtype: str = field(default="auto", metadata={
        "help": "base model dtype of training and evaluation: auto (bfloat16 on a CPU with native bf16, float32 "
                "elsewhere; each stage records and hashes what it used) or float32 / bfloat16", "choices": DTYPES})

    def __post_init__(self):
        if self.scoring not in SCORINGS:
            raise UsageError(f"--scoring {self.scoring!r}: choose from {', '.join(SCORINGS)}")
        if self.suite not in SUITES:
            raise UsageError(f"--suite {self.suite!r}: choose from {', '.join(SUITES)}")
        raw = self.tasks if self.tasks is not None else list(SUITES[self.suite])
        items = raw.items() if isinstance(raw, dict) else ((t, None) for t in raw)
        self.task_specs = {str(n): parse_task(str(n), s, "tasks", self.scoring) for n, s in items}
        if len(self.task_specs) < 2:
            raise UsageError(f"--tasks: a study needs at least two tasks to merge (got {list(self.task_specs)})")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise UsageError(f"--methods {bad[0] if bad else '(none)'!r}: choose from {', '.join(METHODS)}")
        masked, dense = continual_method(True).name, continual_method(False).name  # lori-s, lori-d
        if masked in self.methods and dense not in self.methods:
            raise UsageError(f"--methods: {masked} needs {dense} (its masks come from the {dense} adapters)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"--seeds {self.seeds}: give distinct seeds")
        if not self.weights or any(not 0 < w <= 2 for w in self.weights):
            raise UsageError(f"--weights {self.weights}: each merge weight must be in (0, 2]")
        if self.pair_weight is not None and not 0 < self.pair_weight <= 2:
            raise UsageError(f"--pair-weight {self.pair_weight}: must be in (0, 2]")
        for name in ("rank", "batch_size", "max_steps", "eval_every", "dev_limit", "builtin_rows", "eval_examples",
                     "eval_batch_size", "max_new_tokens", "samples", "osrm_samples", "dev_examples"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if self.workers < 1:  # more workers than groups of stages is harmless: the extra ones are not started
            raise UsageError(f"--workers {self.workers}: must be at least 1")
        if self.train_together and self.shared_prefix:
            raise UsageError("train_together: needs shared_prefix: false (adapters trained together run every "
                             "row in full)")
        if not 0 <= self.min_steps <= self.max_steps:
            raise UsageError(f"--min-steps {self.min_steps}: must be between 0 and --max-steps ({self.max_steps})")
        if not 0 <= self.min_delta < 1:
            raise UsageError(f"--min-delta {self.min_delta}: must be in [0, 1)")
        if not 0 < self.dev_fraction < 1:
            raise UsageError(f"--dev-fraction {self.dev_fraction}: must be in (0, 1)")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype {self.dtype!r}: choose from {', '.join(DTYPES)}")
        if not 0 < self.alpha < 0.5:
            raise UsageError(f"--alpha {self.alpha}: must be in (0, 0.5)")
        if not 0 < self.equivalence_margin < 1:
            raise UsageError(f"--equivalence-margin {self.equivalence_margin}: must be in (0, 1)")
        if not 0 < self.learned_at <= 1:
            raise UsageError(f"--learned-at {self.learned_at}: must be in (0, 1]")
        self.primary_weight  # noqa: B018 (validates --primary)
        self._check_continual()

    def _check_continual(self) -> None:
        if self.continual is None:
            return
        c = self.continual
        if not isinstance(c, dict) or not {"first", "then"} <= set(c) <= {"first", "then", "plain_lora"} or \
                not {c["first"], c["then"]} <= set(self.task_specs) or c["first"] == c["then"]:
            raise UsageError(f"continual: expected {{first: TASK, then: TASK}}, two different tasks of 'tasks' "
                             f"({', '.join(self.task_specs)}), and optionally plain_lora: true, got {c!r}")
        if not isinstance(c.get("plain_lora", False), bool):
            raise UsageError(f"continual: plain_lora: expected true or false, got {c['plain_lora']!r}")
        plain = plain_method().name
        if c.get("plain_lora") and plain not in self.methods:
            raise UsageError(f"continual: plain_lora: needs {plain} among 'methods' (its adapters "
                             f"trained alone on {c['then']!r} are the ones the control is set against)")

    @property
    def primary_weight(self) -> str:
        """``dev`` or the fixed weight (as the table's key, ``f"{w:g}"``) of the primary endpoint."""
        if str(self.primary) == DEV_WEIGHT:
            return DEV_WEIGHT
        try:
            w = float(self.primary)
        except ValueError:
            w = math.nan
        if w not in self.weights:
            raise UsageError(f"--primary {self.primary!r}: '{DEV_WEIGHT}' or one of the weights "
                             f"({', '.join(f'{x:g}' for x in self.weights)})")
        return f"{w:g}"

    @property
    def weight_list(self) -> list[float]:
        """Weights of the scaled singles: the merge weights plus 1.0 (single@1, the down-weighting baseline)."""
        return sorted(set(self.merge_weights) | {1.0})

    @property
    def merge_weights(self) -> list[float]:
        """Weights of the full merges: ``weights`` plus ``pair_weight`` (with 2 tasks the pair is the full merge)."""
        extra = {self.pair_weight} if self.pair_weight is not None else set()
        return sorted(set(self.weights) | extra)
