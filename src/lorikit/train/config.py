"""Typed configuration of a training run; each field's help text is also its ``--flag`` help."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..adapters.build import AdapterConfig
from ..errors import UsageError
from ..models.loading import check_4bit_supported
from .reporting import check_report_to

SCHEDULERS = ("constant", "linear", "cosine")
HEADS = ("causal-lm", "classification")
INITS = ("default", "osrm")
FREEZE = ("none", "A", "B")


@dataclass
class TrainConfig:
    """A supervised fine-tuning run (response tokens only) of one adapter on one data set."""

    out: str = field(default="", metadata={"help": "output folder: a PEFT adapter + lorikit.json"})
    model: str = field(default="smollm2-135m", metadata={
        "help": "base model: smollm2-135m, tiny-random-llama, a local folder or a Hub id"})
    data: str = field(default="builtin:arithmetic", metadata={
        "help": "training data: FILE.json/.jsonl, builtin:NAME[:SPLIT] or a Hub dataset name"})
    format: str = field(default="auto", metadata={"help": "row format", "choices": ("auto", "alpaca", "gsm8k", "nlu")})
    limit: int | None = field(default=None, metadata={"help": "use only the first N rows"})
    builtin_rows: int = field(default=1000, metadata={"help": "rows generated for builtin: tasks"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data (ignored with --max-steps)"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate (reference LoRI-D r32: 5e-5; LoRI-S: 5e-4)"})
    lr_scheduler: str = field(default="constant", metadata={"help": "learning-rate schedule", "choices": SCHEDULERS})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (0 as the reference)"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "clip the gradient norm per step (0 = off)"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch examples of similar length together (sorted within mega-batches of 50 batches, "
                "batch order shuffled; deterministic from the seed): far less padding, every example still "
                "seen once per epoch"})
    max_length: int = field(default=512, metadata={"help": "max tokens per example (prompt + response)"})
    max_prompt_length: int = field(default=256, metadata={"help": "prompt tokens kept (left-truncated)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast for compute, fp32 trainable weights"})
    logits: str = field(default="supervised", metadata={
        "help": "supervised: LM head only at response positions (fast); full: every position",
        "choices": ("supervised", "full")})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    log_every: int = field(default=1, metadata={"help": "write train_log.jsonl every N steps"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty --out"})
    mask: str | None = field(default=None, metadata={
        "help": "LoRI-S: mask file <lori-d adapter>/masks/{sparsity}_mask.pt (reference format); only its "
                "True entries of B are trained, A and the config come from that adapter"})
    from_adapter: str | None = field(default=None, metadata={
        "aliases": ("--from",),
        "help": "continual learning: start from this adapter's A and B; trains only --mask entries "
                "(LoRI-S variant) or all of B without --mask (LoRI-D variant); A stays frozen"})
    head: str = field(default="causal-lm", metadata={
        "help": "causal-lm: SFT on response tokens; classification: sequence classifier on text/sentence1/"
                "sentence2 + label rows, head trained in full and saved with the adapter", "choices": HEADS})
    num_labels: int = field(default=2, metadata={"help": "classes of --head classification (1 = regression, MSE loss)"})
    init: str = field(default="default", metadata={
        "help": "default: the method's own A; osrm: A from --osrm-stats (orthogonal to the other tasks' inputs), B = 0",
        "choices": INITS})
    osrm_stats: str | None = field(default=None, metadata={"help": "statistics folder from lorikit osrm-stats (--init osrm)"})
    task: str | None = field(default=None, metadata={"help": "this run's task name in --osrm-stats (--init osrm)"})
    osrm_mode: str = field(default="mean", metadata={
        "help": "mean: null space of the other tasks' mean inputs (official code); cov: smallest eigenvectors "
                "of their summed second moments (paper)", "choices": ("mean", "cov")})
    osrm_scale: str = field(default="unit", metadata={
        "help": "row norm of the OSRM A: unit (reference), kaiming (1/√3, PEFT's default A), gaussian (√(in/r)) "
                "or a number; sets the effective learning rate"})
    freeze: str = field(default="none", metadata={
        "help": "freeze A (train B only) or none (train both, OSRM's default); B cannot be frozen at B = 0",
        "choices": FREEZE})
    save_every: int = field(default=0, metadata={
        "help": "write a resume checkpoint to <out>.ckpt/step-N every N optimizer steps (0 = never)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "newest checkpoints kept in <out>.ckpt"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the newest complete checkpoint in <out>.ckpt (settings must be unchanged)"})
    deterministic: bool = field(default=False, metadata={
        "help": "GPU: deterministic kernels only (torch.use_deterministic_algorithms, "
                "CUBLAS_WORKSPACE_CONFIG=:4096:8, math attention); CPU runs are deterministic anyway"})
    grad_checkpointing: bool = field(default=False, metadata={
        "help": "activation checkpointing: recompute each decoder layer in backward (less activation memory, one extra forward per layer)"})
    dtype: str = field(default="float32", metadata={
        "help": "dtype of the frozen base weights (bfloat16 halves their memory; adapter weights stay float32)",
        "choices": ("float32", "bfloat16", "float16")})
    load_in_4bit: bool = field(default=False, metadata={
        "help": "QLoRA: NF4 4-bit frozen base weights via bitsandbytes (CUDA GPU only)"})
    report_to: list[str] = field(default_factory=lambda: ["none"], metadata={
        "help": "also send per-step metrics to: tensorboard (event files, offline), wandb, mlflow or none"})
    logging_dir: str | None = field(default=None, metadata={
        "help": "where --report-to tensorboard/wandb write (default: <out>.runs beside the adapter)"})
    adapter: AdapterConfig = field(default_factory=AdapterConfig, metadata={"cli": False})

    def __post_init__(self):
        if not self.out:
            raise UsageError("--out: required (the folder to write the adapter to)")
        for name in ("batch_size", "grad_accum", "max_length"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UsageError(f"--max-steps {self.max_steps}: must be positive")
        if self.epochs <= 0:
            raise UsageError(f"--epochs {self.epochs}: must be positive")
        if self.lr <= 0:
            raise UsageError(f"--lr {self.lr}: must be positive")
        if self.lr_scheduler not in SCHEDULERS:
            raise UsageError(f"--lr-scheduler {self.lr_scheduler!r}: unknown (choose from {', '.join(SCHEDULERS)})")
        if self.save_every < 0:
            raise UsageError(f"--save-every {self.save_every}: must be 0 (off) or positive")
        if self.keep_checkpoints <= 0:
            raise UsageError(f"--keep-checkpoints {self.keep_checkpoints}: must be positive")
        if self.limit is not None and self.limit <= 0:
            raise UsageError(f"--limit {self.limit}: must be positive")
        check_report_to(self.report_to)
        if self.load_in_4bit:
            check_4bit_supported()
        self._check_sparse_options()
        self._check_head_and_init()
        if not self.adapter.seed_given and not self.mask and not self.from_adapter:
            # METHODS.md: different tasks get different A by default. With one fixed default seed,
            # every task's LoRI adapter would share A (and every LoRA adapter its initial A), and a
            # merge of them would add all B's into one row space. LoRI-S and continual runs keep
            # the seed of the adapter their A comes from.
            self.adapter.seed = data_seed(self.data)
            self.adapter.seed_derived = True

    def _check_sparse_options(self) -> None:
        method = self.adapter.method
        if self.from_adapter:
            # Continual learning trains B only; the variant follows from the mask.
            if method == "lori-s" and not self.mask:
                raise UsageError("--method lori-s with --from: needs --mask FILE (the new task's mask)")
            if method == "lori-d" and self.mask:
                raise UsageError("--method lori-d with --mask: a mask trains sparse B, use --method lori-s")
            self.adapter.method = "lori-s" if self.mask else "lori-d"
        elif method == "lori-s" and not self.mask:
            raise UsageError("--method lori-s: needs --mask FILE (extract one with `lorikit masks ADAPTER`)")
        elif self.mask and method != "lori-s":
            raise UsageError(f"--mask: only with --method lori-s or --from (got --method {method})")

    def _check_head_and_init(self):
        if self.head not in HEADS:
            raise UsageError(f"--head {self.head!r}: unknown (choose from {', '.join(HEADS)})")
        if self.head == "classification" and self.num_labels < 1:
            raise UsageError(f"--num-labels {self.num_labels}: must be at least 1 (1 = regression)")
        if self.init not in INITS:
            raise UsageError(f"--init {self.init!r}: unknown (choose from {', '.join(INITS)})")
        if self.freeze not in FREEZE:
            raise UsageError(f"--freeze {self.freeze!r}: unknown (choose from {', '.join(FREEZE)})")
        if self.freeze == "B":
            raise UsageError("--freeze B: B starts at 0 and A's gradient is proportional to B, so nothing "
                             "would ever train (use --freeze A or none)")
        if (self.mask or self.from_adapter) and (self.init != "default" or self.head != "causal-lm"):
            raise UsageError("--mask/--from: start from an existing adapter, so --init osrm and "
                             "--head classification do not apply")
        if self.init == "osrm":
            from ..osrm.init import MODES, check_scale

            if not self.osrm_stats or not self.task:
                raise UsageError("--init osrm: needs --osrm-stats FOLDER and --task NAME")
            if self.osrm_mode not in MODES:
                raise UsageError(f"--osrm-mode {self.osrm_mode!r}: unknown (choose from {', '.join(MODES)})")
            check_scale(self.osrm_scale)


def data_seed(spec: str) -> int:
    """Default seed of a training run: a function of its data, so different tasks get different A.

    A local file is identified by its content (the same data gives the same seed on any machine
    and under any path); ``builtin:NAME`` and Hub data sets by name. Selectors that pick part of the
    same data (``?split=...``, a built-in ``:SPLIT``) are ignored, so a task's train and dev views
    share a seed."""
    import hashlib

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
