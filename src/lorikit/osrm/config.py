"""The typed configs of OSRM: ``--init osrm`` (``OsrmInitConfig``, a sub-config of ``TrainConfig``),
``lorikit osrm-stats`` (``StatsConfig``) and ``lorikit osrm-transform`` (``TransformConfig``).
Torch-free, so the command line's parser and ``--help`` load without it; the computations are in
``init.py``, ``collect.py`` and ``transform.py``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..adapters.config import DEFAULT_TARGETS
from ..data.formats import FORMATS
from ..errors import UsageError

MODES = ("mean", "cov")
NAMED_SCALES = ("unit", "kaiming", "gaussian")


@dataclass
class OsrmInitConfig:
    """Settings of ``--init osrm`` (a sub-config of ``TrainConfig``, field ``osrm``)."""

    osrm_stats: str | None = field(default=None, metadata={"help": "statistics folder from lorikit osrm-stats (--init osrm)"})
    task: str | None = field(default=None, metadata={"help": "this run's task name in --osrm-stats (--init osrm)"})
    osrm_mode: str = field(default="mean", metadata={
        "help": "mean: null space of the other tasks' mean inputs (official code); cov: smallest eigenvectors "
                "of their summed second moments (paper)", "choices": MODES})
    osrm_scale: str = field(default="unit", metadata={
        "help": "row norm of the OSRM A: unit (reference), kaiming (1/√3, PEFT's default A), gaussian (√(in/r)) "
                "or a number; sets the effective learning rate"})


def parse_scale(scale: str | float, in_features: int, rank: int) -> float:
    """The factor applied to the orthonormal rows (see the module docstring)."""
    if isinstance(scale, (int, float)):
        value = float(scale)
    elif scale == "unit":
        value = 1.0
    elif scale == "kaiming":
        value = 1.0 / math.sqrt(3.0)
    elif scale == "gaussian":
        value = math.sqrt(in_features / rank)
    else:
        try:
            value = float(scale)
        except ValueError:
            raise UsageError(f"--osrm-scale {scale!r}: a positive number or one of {', '.join(NAMED_SCALES)}") from None
    if not value > 0 or not math.isfinite(value):
        raise UsageError(f"--osrm-scale {scale!r}: must be a positive number")
    return value


def check_scale(scale: str | float) -> None:
    parse_scale(scale, 1, 1)


GRAM_DTYPES = ("float64", "float32")


@dataclass
class StatsConfig:
    """Collect per-task input statistics of the target modules of a pretrained model."""

    out: str = field(default="", metadata={"help": "output folder: osrm_stats.json + one <task>.safetensors per task"})
    model: str = field(default="smollm2-135m", metadata={"help": "pretrained base model (the adapters' base)"})
    data: list[str] = field(default_factory=list, metadata={
        "help": "TASK=SPEC pairs, e.g. code=train.jsonl math=builtin:arithmetic (any --data spec)"})
    format: str = field(default="auto", metadata={"help": "row format of every data set",
                                                   "choices": FORMATS})
    samples: int = field(default=100, metadata={"help": "examples drawn per task (the reference: 100)"})
    seed: int = field(default=42, metadata={"help": "seed of the example draw (the reference: 42)"})
    max_length: int = field(default=128, metadata={"help": "tokens per example, prompt + response (reference: 128)"})
    batch_size: int = field(default=8, metadata={"help": "examples per forward pass"})
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS), metadata={
        "help": "module names whose inputs are recorded (suffixes)"})
    second_moment: bool = field(default=True, metadata={
        "help": "also accumulate Σ h hᵀ (needed by --osrm-mode cov; d² floats per module group)"})
    gram_dtype: str = field(default="float64", metadata={
        "help": "dtype of each batch's hᵀh product (float32 is faster; the running sum is float64 either way)",
        "choices": GRAM_DTYPES})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty --out"})

    def __post_init__(self):
        if not self.out:
            raise UsageError("--out: required (the folder to write the statistics to)")
        if not self.data:
            raise UsageError("--data: give at least one TASK=SPEC pair")
        for name in ("samples", "max_length", "batch_size"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if self.gram_dtype not in GRAM_DTYPES:
            raise UsageError(f"--gram-dtype {self.gram_dtype!r}: unknown (choose from {', '.join(GRAM_DTYPES)})")
        self.tasks()  # validate now

    def tasks(self) -> dict[str, str]:
        tasks: dict[str, str] = {}
        for item in self.data:
            name, sep, spec = item.partition("=")
            if not sep or not name or not spec:
                raise UsageError(f"--data {item!r}: expected TASK=SPEC (e.g. code=train.jsonl)")
            if not re.fullmatch(r"[\w.-]+", name):
                raise UsageError(f"--data {item!r}: task name {name!r} may use letters, digits, '_', '.', '-'")
            if name in tasks:
                raise UsageError(f"--data: task {name!r} given twice")
            tasks[name] = spec
        return tasks


@dataclass
class TransformConfig:
    """Project an adapter or a fully fine-tuned model onto OSRM's subspace for one task."""

    source: str = field(default="", metadata={"cli": False})
    osrm_stats: str = field(default="", metadata={"help": "statistics folder from lorikit osrm-stats"})
    task: str = field(default="", metadata={"help": "the source's task name in --osrm-stats"})
    out: str = field(default="", metadata={"help": "output adapter folder"})
    osrm_mode: str = field(default="mean", metadata={"help": "mean (official code) or cov (paper)", "choices": MODES})
    osrm_scale: str = field(default="unit", metadata={
        "help": "row norm of A' (unit, kaiming, gaussian or a number); B' compensates, ΔW' is the same"})
    rank: int | None = field(default=None, metadata={
        "help": "rank r of the new adapter (default: the LoRA adapter's; 8 for a full model, OSRM's GLUE setup)"})
    alpha: float | None = field(default=None, metadata={
        "help": "lora_alpha of the new adapter (default: the LoRA adapter's; 2r for a full model)"})
    base_model: str | None = field(default=None, metadata={
        "help": "base model W_0 of a fully fine-tuned source (default: the statistics' model)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty --out"})

    def __post_init__(self):
        for name in ("osrm_stats", "task", "out"):
            if not getattr(self, name):
                raise UsageError(f"--{name.replace('_', '-')}: required")
        if self.rank is not None and self.rank <= 0:
            raise UsageError(f"--rank {self.rank}: must be a positive integer")
        if self.osrm_mode not in MODES:
            raise UsageError(f"--osrm-mode {self.osrm_mode!r}: unknown (choose from {', '.join(MODES)})")
