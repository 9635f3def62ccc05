"""Typed configuration of a training run; each field's help text is also its ``--flag`` help."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..adapters.build import AdapterConfig
from ..errors import UsageError

SCHEDULERS = ("constant", "linear", "cosine")


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
    max_length: int = field(default=512, metadata={"help": "max tokens per example (prompt + response)"})
    max_prompt_length: int = field(default=256, metadata={"help": "prompt tokens kept (left-truncated)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast for compute, fp32 trainable weights"})
    logits: str = field(default="supervised", metadata={
        "help": "supervised: LM head only at response positions (fast); full: every position",
        "choices": ("supervised", "full")})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    log_every: int = field(default=1, metadata={"help": "write train_log.jsonl every N steps"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty --out"})
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
