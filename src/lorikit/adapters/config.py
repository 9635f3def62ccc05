"""What adapter to attach (``AdapterConfig``): a typed config whose fields are the ``--method``,
``--rank``, ... flags. Light on purpose (no torch, transformers or PEFT), so the command line's
parser and ``--help`` are built without them; ``build.py`` attaches what this describes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import UsageError
from ..utils.validate import check_number, check_seed
from .inits import get_seeded_init, seeded_init_names
from .methods import get_method, method_help, method_names

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ALL_LINEAR = "all-linear"  # PEFT's shorthand: every Linear but the output layer
METHODS = method_names()
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSeed:
    """The one seed of a run, resolved once and passed down: PEFT's initial weights, LoRI's
    A = f(seed, module), the data order, LoRA dropout and the dev carve all use ``used``.

    ``origin``: ``given`` (``--seed``, ``seed=``), ``data`` (derived from the training data, so
    different tasks get different A), ``adapter`` (a LoRI-S or continual run takes the seed of the
    adapter its A comes from: ``value`` is None until that adapter is read, and stays None when its
    A was not drawn from a seed) or ``unset`` (nobody chose one: 0)."""

    value: int | None
    origin: str

    @property
    def used(self) -> int:
        return 0 if self.value is None else self.value

    @property
    def chosen(self) -> bool:
        return self.origin != "unset"


UNSET_SEED = RunSeed(None, "unset")


@dataclass
class AdapterConfig:
    """What adapter to put on the base model."""

    method: str = field(default="lora", metadata={"help": method_help(), "choices": METHODS})
    rank: int = field(default=32, metadata={"help": "LoRA rank r"})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; scaling s = alpha / r (default 2 × rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout on the adapter input"})
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS), metadata={
        "help": "module names to adapt (suffixes, as PEFT matches them), or all-linear (PEFT's shorthand: "
                "every Linear layer but the output layer)"})
    a_init: str = field(default="kaiming", metadata={
        "help": "LoRI's frozen A: kaiming (U(±1/√in), the reference) or gaussian (N(0, 1/r))",
        "choices": seeded_init_names()})
    seed: int | None = field(default=None, metadata={
        "help": "seed of A (LoRI: A = f(seed, module)) and of the run; when not given, training derives it "
                "from the data (so different tasks get different A), LoRI-S and continual runs take the seed "
                "of the adapter their A comes from, and other uses take 0"})

    def __post_init__(self):
        get_method(self.method)
        if self.rank <= 0:
            raise UsageError(f"--rank {self.rank}: must be a positive integer")
        if self.alpha is None:
            self.alpha = 2.0 * self.rank
        check_number("--alpha", self.alpha, low=0, low_open=True)  # α = 0: ΔW = 0, nothing to learn
        check_number("--dropout", self.dropout, low=0, high=1, high_open=True)
        if self.seed is not None:
            check_seed("--seed", self.seed)
        get_seeded_init(self.a_init)
        self._derived_seed: RunSeed | None = None  # not a field: never a flag, never written to disk
        if not self.target_modules:
            raise UsageError("--target-modules: give at least one module name")
        if ALL_LINEAR in self.target_modules and len(self.target_modules) > 1:
            raise UsageError(f"--target-modules {' '.join(self.target_modules)}: {ALL_LINEAR} already names every "
                             "Linear layer; give it alone")

    @property
    def peft_target_modules(self) -> str | list[str]:
        """``LoraConfig.target_modules``: PEFT reads the ``all-linear`` shorthand only as a string."""
        return ALL_LINEAR if self.target_modules == [ALL_LINEAR] else list(self.target_modules)

    @property
    def run_seed(self) -> RunSeed:
        """This adapter's seed, resolved: ``seed`` when given, else the one its training run derived
        (``derive_seed``), else unset (0)."""
        if self.seed is not None:
            return RunSeed(self.seed, "given")
        return self._derived_seed or UNSET_SEED

    def derive_seed(self, seed: RunSeed) -> None:
        """Carry the seed a training run derived (``TrainConfig``: from its data) without rewriting
        ``seed`` (the flag stays as given), so attaching this config directly draws the trainer's A."""
        self._derived_seed = seed

    @property
    def freezes_a(self) -> bool:
        return get_method(self.method).freezes_a


def check_seed_chosen(cfg: AdapterConfig) -> None:
    """LoRI's A must differ between tasks: refuse to draw it from the placeholder seed 0 nobody chose."""
    if cfg.run_seed.chosen:
        return
    if cfg.freezes_a:
        raise UsageError(f"AdapterConfig.seed: {cfg.method} needs a per-task seed (A = f(seed, module); one shared "
                         "default would give every task the same A): pass seed=INT, e.g. "
                         "lorikit.integrations.task_seed('my-task')")
    logger.warning("AdapterConfig.seed not given: LoRA's initial A is drawn with seed 0")
