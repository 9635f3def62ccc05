"""Typed configuration of a training run; each field's help text is also its ``--flag`` help.

``TrainConfig`` holds the run's own settings and one sub-config per concern: ``adapter``
(``AdapterConfig``: method, rank, A's init and seed) and ``osrm`` (``OsrmInitConfig``, the settings
of ``--init osrm``). CLI flags and recipe keys stay flat (``--osrm-stats``, ``osrm_stats:``);
``split_settings`` routes each to its sub-config. Nothing here rewrites another field: the method
and seed a run actually uses are derived (``train_method``, ``run_seed``: a ``RunSeed``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..adapters.config import AdapterConfig, RunSeed
from ..adapters.inits import data_init_names, get_init
from ..adapters.methods import AdapterMethod, continual_method, get_method, mask_method_names
from ..data.formats import FORMATS
from ..data.loading import carve_spec
from ..errors import UsageError
from ..models.device import DTYPES, resolve_dtype
from ..osrm import registered_init  # noqa: F401 (registers --init osrm before INITS is read)
from ..osrm.config import OsrmInitConfig
from ..utils.settings import did_you_mean
from ..utils.validate import check_device, check_number
from .heads import HEADS
from .reporting import check_report_to
from .schedule import LR_SCHEDULERS, METRIC_SCHEDULERS

EVAL_STRATEGIES = ("no", "steps", "epoch")
INITS = ("default", *data_init_names())
FREEZE = ("none", "A", "B")


@dataclass
class TrainConfig:
    """A supervised fine-tuning run (response tokens only) of one adapter on one data set."""

    out: str = field(default="", metadata={"help": "output folder: a PEFT adapter + lorikit.json"})
    model: str = field(default="smollm2-135m", metadata={
        "help": "base model: smollm2-135m, tiny-random-llama, a local folder or a Hub id"})
    data: str = field(default="builtin:arithmetic", metadata={
        "help": "training data: FILE.json/.jsonl, builtin:NAME[:SPLIT] or a Hub dataset name"})
    format: str = field(default="auto", metadata={
        "help": "row format: auto (from the fields), alpaca, gsm8k, nlu, or TRL's messages (loss on the assistant "
                "turns), prompt-completion (loss on the completion), text (loss on every token)", "choices": FORMATS})
    template: str = field(default="reference", metadata={
        "help": "prompt template: reference = the row format's own (Alpaca / GSM8K, reference-compatible), "
                "chat = the user message in the tokenizer's chat template (Instruct models)",
        "choices": ("reference", "chat")})
    limit: int | None = field(default=None, metadata={"help": "use only the first N rows"})
    builtin_rows: int = field(default=1000, metadata={"help": "rows generated for builtin: tasks"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data (ignored with --max-steps)"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate (reference LoRI-D r32: 5e-5; LoRI-S: 5e-4)"})
    lr_scheduler: str = field(default="constant", metadata={
        "help": "learning-rate schedule, any of transformers' SchedulerType stepped per optimizer step "
                "(built by transformers.get_scheduler)", "choices": LR_SCHEDULERS})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps (lr · step / N, as transformers)"})
    warmup_ratio: float = field(default=0.0, metadata={
        "help": "warm-up as a share of the run's optimizer steps, ⌈ratio · steps⌉, when --warmup-steps is 0"})
    lr_scheduler_kwargs: dict[str, Any] | None = field(default=None, metadata={
        "help": "extra arguments of the schedule as JSON, e.g. '{\"min_lr_rate\": 0.1}' for cosine_with_min_lr"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (0 as the reference)"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "clip the gradient norm per step (0 = off)"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch examples of similar length together (sorted within mega-batches of 50 batches, "
                "batch order shuffled; deterministic from the seed): far less padding, every example still "
                "seen once per epoch"})
    max_length: int = field(default=512, metadata={"help": "max tokens per example (prompt + response)"})
    max_prompt_length: int = field(default=256, metadata={"help": "prompt tokens kept (left-truncated)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast for compute, fp32 trainable weights"})
    fp16: bool = field(default=False, metadata={
        "help": "float16 autocast with dynamic loss scaling (torch.amp.GradScaler, as transformers' --fp16), "
                "fp32 trainable weights; single process"})
    logits: str = field(default="supervised", metadata={
        "help": "supervised: LM head only at response positions (fast); full: every position",
        "choices": ("supervised", "full")})
    shared_prefix: bool = field(default=False, metadata={
        "help": "run the prompt tokens every row of a micro-batch shares (a template's preamble) once and let "
                "each row attend to them: ~2x fewer tokens through the decoder with the reference template; "
                "the same loss and gradients up to rounding without dropout, with LoRA dropout one mask "
                "for the shared tokens of a micro-batch (the expected loss is unchanged)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    log_every: int = field(default=1, metadata={
        "help": "one train_log.jsonl line (and --report-to point) per N steps: loss averaged over them"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty --out"})
    mask: str | None = field(default=None, metadata={
        "help": "LoRI-S: mask file <lori-d adapter>/masks/{sparsity}_mask.pt (reference format); only its "
                "True entries of B are trained, A and the config come from that adapter"})
    from_adapter: str | None = field(default=None, metadata={
        "aliases": ("--from",),
        "help": "continual learning: start from this adapter's A and B; trains only --mask entries "
                "(LoRI-S variant) or all of B without --mask (LoRI-D variant); A stays frozen unless "
                "--continue-a"})
    continue_a: bool = field(default=False, metadata={
        "help": "with --from and --method lora: train the adapter's A as well as its B (plain LoRA "
                "continual fine-tuning, as PEFT's is_trainable=True and the LoRI reference's LoRA baseline do); "
                "without it A stays frozen"})
    head: str = field(default="causal-lm", metadata={
        "help": "causal-lm: SFT on response tokens; classification: sequence classifier on text/sentence1/"
                "sentence2 + label rows, head trained in full and saved with the adapter", "choices": tuple(HEADS)})
    num_labels: int = field(default=2, metadata={"help": "classes of --head classification (1 = regression, MSE loss)"})
    init: str = field(default="default", metadata={
        "help": "default: the method's own A; " + "; ".join(f"{n}: {get_init(n).summary}" for n in INITS[1:]),
        "choices": INITS})
    freeze: str = field(default="none", metadata={
        "help": "freeze A (train B only) or none (train both, OSRM's default); B cannot be frozen at B = 0",
        "choices": FREEZE})
    save_every: int = field(default=0, metadata={
        "help": "every N optimizer steps (0 = never) write the adapter so far to <out>/checkpoint-N (a stock "
                "PEFT adapter) and the resume state to <out>.ckpt/step-N"})
    resume_state_only: bool = field(default=False, metadata={
        "help": "with --save-every: write only the resume state <out>.ckpt/step-N, no <out>/checkpoint-N "
                "adapter folders (what lorikit run/study stages do to survive a kill)"})
    keep_checkpoints: int = field(default=2, metadata={
        "help": "newest checkpoints kept (<out>/checkpoint-N adapters and <out>.ckpt/step-N resume states)"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the newest complete checkpoint in <out>.ckpt (settings must be unchanged)"})
    resume_from: str | None = field(default=None, metadata={
        "metavar": "PATH", "help": "continue from this checkpoint: <out>/checkpoint-N (its resume state <out>.ckpt/step-N must "
                "exist) or <out>.ckpt/step-N; settings must be unchanged"})
    deterministic: bool = field(default=False, metadata={
        "help": "GPU: deterministic kernels only (torch.use_deterministic_algorithms, "
                "CUBLAS_WORKSPACE_CONFIG=:4096:8, math attention); CPU runs are deterministic anyway"})
    grad_checkpointing: bool = field(default=False, metadata={
        "help": "activation checkpointing: recompute each decoder layer in backward (less activation memory, one extra forward per layer)"})
    dtype: str = field(default="auto", metadata={
        "help": "dtype of the frozen base weights (adapter weights and optimizer state stay float32); auto: "
                "bfloat16 on a CPU with native bf16 (AVX512-BF16 / AMX), float32 elsewhere and for --head "
                "classification; float32 to opt out",
        "choices": DTYPES})
    load_in_4bit: bool = field(default=False, metadata={
        "help": "QLoRA: NF4 4-bit frozen base weights via bitsandbytes (CUDA GPU only)"})
    report_to: list[str] = field(default_factory=lambda: ["none"], metadata={
        "help": "also send per-step metrics to: tensorboard (event files, offline), wandb, mlflow or none"})
    logging_dir: str | None = field(default=None, metadata={
        "help": "where --report-to tensorboard/wandb write (default: <out>/runs/<date>_<host>, as transformers)"})
    eval_every: int = field(default=0, metadata={
        "help": "train to convergence: dev loss every N optimizer steps (0 = off); the best step's adapter is "
                "written and lorikit.json records it (needs --dev-data or --dev-fraction; --max-steps is the cap)"})
    eval_strategy: str | None = field(default=None, metadata={
        "help": "Hugging Face's switch: steps (needs --eval-every N), epoch (dev loss at the end of each pass "
                "over the data and after the last step) or no (no dev evaluation); by default steps when "
                "--eval-every is given", "choices": EVAL_STRATEGIES})
    patience: int = field(default=0, metadata={
        "help": "stop after this many dev evaluations without a new best (0 = run to the cap, still keep the best)"})
    min_delta: float = field(default=0.0, metadata={"help": "a dev loss must beat the best by more than this to count"})
    min_steps: int = field(default=0, metadata={
        "help": "a plateau may stop the run only from this optimizer step on (0 = from the start): a task whose "
                "dev loss sits at chance before it is learned is not stopped in that phase (needs --patience)"})
    dev_data: str | None = field(default=None, metadata={
        "help": "dev examples for --eval-every (any --data spec, e.g. builtin:NAME:dev)"})
    dev_fraction: float | None = field(default=None, metadata={
        "help": "carve this fixed-seed share of --data out as the dev set (training uses the rest)"})
    dev_limit: int | None = field(default=128, metadata={"help": "dev examples used per evaluation (first N)"})
    adapter: AdapterConfig = field(default_factory=AdapterConfig, metadata={"cli": False})
    osrm: OsrmInitConfig = field(default_factory=OsrmInitConfig, metadata={"cli": False})

    def __post_init__(self):
        if not self.out:
            raise UsageError("--out: required (the folder to write the adapter to)")
        for name in ("batch_size", "grad_accum", "max_length", "log_every"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UsageError(f"--max-steps {self.max_steps}: must be positive")
        check_number("--epochs", self.epochs, low=0, low_open=True)
        check_number("--lr", self.lr, low=0, low_open=True)
        check_number("--weight-decay", self.weight_decay, low=0)
        if self.max_grad_norm is not None:
            check_number("--max-grad-norm", self.max_grad_norm, low=0)
        self._check_schedule()
        if self.bf16 and self.fp16:
            raise UsageError("--bf16 and --fp16: give one (the autocast dtype)")
        check_device(self.device)
        # a classification head trains in full, as a copy in the base's dtype: bf16 would round its updates
        auto_fp32 = getattr(HEADS.get(self.head), "trains_head", False) and self.dtype == "auto"
        self.dtype = "float32" if auto_fp32 else resolve_dtype(self.dtype, self.device)
        if self.save_every < 0:
            raise UsageError(f"--save-every {self.save_every}: must be 0 (off) or positive")
        if self.keep_checkpoints <= 0:
            raise UsageError(f"--keep-checkpoints {self.keep_checkpoints}: must be positive")
        if self.limit is not None and self.limit <= 0:
            raise UsageError(f"--limit {self.limit}: must be positive")
        check_report_to(self.report_to)
        if self.load_in_4bit:
            from ..models.loading import check_4bit_supported  # torch: only when asked for

            check_4bit_supported()
        self._check_sources()
        self._check_head_and_init()
        self._check_early_stopping()
        # The run's seed, resolved once (docs/methods.md: different tasks get different A; LoRI-S and
        # continual runs keep the seed of the adapter their A comes from). --seed is not rewritten:
        # the adapter carries a derived seed beside it, so attaching cfg.adapter directly draws the
        # same A as the trainer.
        self.run_seed = self._resolve_seed()
        if self.run_seed.origin == "data":
            self.adapter.derive_seed(self.run_seed)

    @property
    def evaluating(self) -> bool:
        """Dev loss is scored during training: every ``--eval-every`` steps or at each epoch's end."""
        return bool(self.eval_every) or self.eval_strategy == "epoch"

    @property
    def resuming(self) -> bool:
        """``--resume`` or ``--resume-from PATH``: the run continues from a checkpoint."""
        return self.resume or bool(self.resume_from)

    def joint_refusals(self, checkpoints: bool = True) -> list[tuple[str, str]]:
        """(setting, flag) of what a joint run (train_many, a study's train_together) cannot do, in the order its
        error names them; ``checkpoints=False`` leaves out the checkpointing a pipeline stage sets for itself."""
        saving = [("save_every", "--save-every", self.save_every), ("resume", "--resume", self.resuming)]
        return [(name, flag) for name, flag, on in (
            ("fp16", "--fp16", self.fp16), *(saving if checkpoints else []),
            ("grad_checkpointing", "--grad-checkpointing", self.grad_checkpointing),
            ("load_in_4bit", "--load-in-4bit", self.load_in_4bit), ("shared_prefix", "--shared-prefix", self.shared_prefix),
            ("head", f"--head {self.head}", HEADS[self.head].trains_head)) if on]

    @property
    def train_method(self) -> AdapterMethod:
        """The method this run trains: ``--method``, or with ``--from`` the continuing method ``--mask`` picks."""
        if self.from_adapter and not self.continue_a:
            return continual_method(bool(self.mask))
        return get_method(self.adapter.method)

    def inputs(self) -> list[str | None]:
        """The files and folders this run reads (``--out`` must not hold any of them): the data, the
        source adapter, the mask and what each data-driven init's settings name."""
        inits = [get_init(name) for name in data_init_names()]
        return [self.data.split("?", 1)[0], self.from_adapter, self.mask,
                *(path for init in inits for path in init.inputs(getattr(self, init.config_field)))]

    def _resolve_seed(self) -> RunSeed:
        """``--seed``; else, for a fresh run, a function of the data (different tasks get different A);
        else pending: LoRI-S and continual runs take the seed of the adapter their A comes from."""
        if self.adapter.seed is not None:
            return RunSeed(self.adapter.seed, "given")
        if self.mask or self.from_adapter:
            return RunSeed(None, "adapter")
        return RunSeed(data_seed(self.data), "data")

    def _check_sources(self) -> None:
        method = get_method(self.adapter.method)
        if self.continue_a:
            if not self.from_adapter:
                raise UsageError("--continue-a: only with --from ADAPTER (it trains that adapter's A as well as its B)")
            if self.mask or method.uses_mask or method.freezes_a:
                raise UsageError(f"--continue-a: trains A, but --method {method.name}"
                                 f"{' with --mask' if self.mask else ''} keeps A frozen "
                                 "(use --method lora without --mask, or drop --continue-a)")
            return
        if self.from_adapter:
            if method.uses_mask and not self.mask:
                raise UsageError(f"--method {method.name} with --from: needs --mask FILE (the new task's mask)")
            if method.continues and not method.uses_mask and self.mask:
                raise UsageError(f"--method {method.name} with --mask: a mask trains sparse B, "
                                 f"use --method {mask_method_names()}")
        elif method.uses_mask and not self.mask:
            raise UsageError(f"--method {method.name}: needs --mask FILE (extract one with `lorikit masks ADAPTER`)")
        elif self.mask and not method.uses_mask:
            raise UsageError(f"--mask: only with --method {mask_method_names()} or --from (got --method {method.name})")

    def _check_schedule(self) -> None:
        if self.warmup_steps < 0:
            raise UsageError(f"--warmup-steps {self.warmup_steps}: must be 0 or positive")
        check_number("--warmup-ratio", self.warmup_ratio, low=0, high=1, high_open=True)
        if self.warmup_steps and self.warmup_ratio:
            raise UsageError("--warmup-steps and --warmup-ratio: give one (steps, or a share of the run's steps)")
        if self.lr_scheduler in METRIC_SCHEDULERS:
            raise UsageError(f"--lr-scheduler {self.lr_scheduler}: steps on a metric, not per optimizer step; "
                             f"not supported (choose from {', '.join(LR_SCHEDULERS)})")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise UsageError(f"--lr-scheduler {self.lr_scheduler!r}: unknown"
                             f"{did_you_mean(self.lr_scheduler, LR_SCHEDULERS)} (choose from {', '.join(LR_SCHEDULERS)})")
        if self.lr_scheduler_kwargs is not None and not isinstance(self.lr_scheduler_kwargs, dict):
            raise UsageError(f"--lr-scheduler-kwargs {self.lr_scheduler_kwargs!r}: expected a JSON object")

    def _check_early_stopping(self) -> None:
        if self.eval_strategy not in (None, *EVAL_STRATEGIES):
            raise UsageError(f"--eval-strategy {self.eval_strategy!r}: unknown"
                             f"{did_you_mean(str(self.eval_strategy), EVAL_STRATEGIES)} (choose from no, steps, epoch; "
                             "evaluation every N optimizer steps is --eval-steps N)")
        if self.eval_strategy == "no" and self.eval_every:
            raise UsageError(f"--eval-strategy no with --eval-steps {self.eval_every}: give one")
        if self.eval_strategy == "steps" and not self.eval_every:
            raise UsageError("--eval-strategy steps: needs --eval-steps N (dev evaluation every N optimizer steps)")
        if self.eval_strategy == "epoch" and self.eval_every:
            raise UsageError(f"--eval-strategy epoch with --eval-steps {self.eval_every}: give one (each epoch's "
                             "end, or every N optimizer steps)")
        for name in ("eval_every", "patience", "min_steps"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be 0 (off) or positive")
        if self.dev_limit is not None and self.dev_limit <= 0:
            raise UsageError(f"--dev-limit {self.dev_limit}: must be positive")
        if self.dev_fraction is not None and not 0 < self.dev_fraction < 1:
            raise UsageError(f"--dev-fraction {self.dev_fraction}: must be in (0, 1)")
        if self.min_steps and not self.patience:
            raise UsageError(f"--min-steps {self.min_steps}: needs --patience N (without it no plateau stops a run)")
        if self.min_steps and self.max_steps is not None and self.min_steps > self.max_steps:
            raise UsageError(f"--min-steps {self.min_steps}: above --max-steps {self.max_steps}")
        if self.dev_data and self.dev_fraction is not None:
            raise UsageError("--dev-data and --dev-fraction: give one (a dev file, or a share of --data to carve out)")
        if not self.evaluating:
            if self.patience or self.dev_data or self.dev_fraction is not None:
                raise UsageError("--patience/--dev-data/--dev-fraction: need --eval-every N or --eval-strategy "
                                 "epoch (how often to score dev)")
            return
        flag = "--eval-every" if self.eval_every else "--eval-strategy epoch"
        if not self.dev_data and self.dev_fraction is None:
            raise UsageError(f"{flag}: needs --dev-data SPEC or --dev-fraction F (the dev examples)")
        if not HEADS[self.head].early_stopping:
            raise UsageError(f"{flag}: not supported with --head classification")
        if self.dev_fraction is not None:
            # a carve of a carve when --data already selects a split (a held-out test carve, say);
            # data_seed ignores the ?split selectors: the run's default seed stays the data's own
            self.dev_data = carve_spec(self.data, "dev", self.dev_fraction)
            self.data = carve_spec(self.data, "train", self.dev_fraction)

    def _check_head_and_init(self):
        HEADS.lookup(self.head, "--head")
        if self.shared_prefix:
            if not HEADS[self.head].shares_prefix:
                raise UsageError(f"--shared-prefix: not with --head {self.head} (its rows are scored at the last token)")
            if self.logits != "supervised" or self.grad_checkpointing:
                raise UsageError("--shared-prefix: needs --logits supervised and no --grad-checkpointing "
                                 "(the shared tokens' keys and values are passed as a KV cache)")
        if HEADS[self.head].needs_labels and self.num_labels < 1:
            raise UsageError(f"--num-labels {self.num_labels}: must be at least 1 (1 = regression)")
        if self.init not in INITS:
            raise UsageError(f"--init {self.init!r}: unknown (choose from {', '.join(INITS)})")
        if self.freeze not in FREEZE:
            raise UsageError(f"--freeze {self.freeze!r}: unknown (choose from {', '.join(FREEZE)})")
        if self.freeze == "B":
            raise UsageError("--freeze B: B starts at 0 and A's gradient is proportional to B, so nothing "
                             "would ever train (use --freeze A or none)")
        if (self.mask or self.from_adapter) and (self.init != "default" or not HEADS[self.head].from_adapter):
            raise UsageError("--mask/--from: start from an existing adapter, so --init osrm and "
                             "--head classification do not apply")
        if self.init != "default":
            init = get_init(self.init)
            init.check(getattr(self, init.config_field))

    @classmethod
    def from_flat(cls, **settings) -> "TrainConfig":
        """Build from flat keys, as on the command line and in recipes: ``TrainConfig.from_flat(out=...,
        method="lori-d", rank=8, init="osrm", osrm_stats=..., task=...)``."""
        own, parts = split_settings(settings)
        return cls(**own, **{name: SUBCONFIGS[name](**values) for name, values in parts.items()})

    def flat(self) -> dict:
        """The run's settings as flat keys, as on the command line and in recipes (no ``adapter``)."""
        values = asdict(self)
        values.pop("adapter")
        for name in SUBCONFIGS:
            if name != "adapter":
                values.update(values.pop(name))
        return values


# the adapter's settings, then each data-driven init's own settings class (its flags and recipe keys)
SUBCONFIGS: dict[str, type] = {"adapter": AdapterConfig, **{
    get_init(name).config_field: get_init(name).settings for name in data_init_names()}}


def split_settings(settings: dict) -> tuple[dict, dict[str, dict]]:
    """Flat keys (CLI dests, recipe keys) → (TrainConfig's own settings, {sub-config field: its settings})."""
    owners = {f.name: name for name, cls in SUBCONFIGS.items() for f in fields(cls)}
    own: dict = {}
    parts: dict[str, dict] = {name: {} for name in SUBCONFIGS}
    for key, value in settings.items():
        (parts[owners[key]] if key in owners else own)[key] = value
    return own, parts


def data_seed(spec: str) -> int:
    """Default seed of a training run: a function of its data, so different tasks get different A.

    A local file is identified by its content (the same data gives the same seed on any machine
    and under any path); ``builtin:NAME`` and Hub data sets by name. Selectors that pick part of the
    same data (``?split=...``, a built-in ``:SPLIT``) are ignored, so a task's train and dev views
    share a seed."""
    base = spec.split("?", 1)[0]
    path = Path(base)
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    else:
        if base.startswith("builtin:"):
            base = ":".join(base.split(":")[:2])
        digest.update(base.encode())
    return int.from_bytes(digest.digest()[:4], "little") % (2**31 - 1)
