"""``SearchConfig``: which adapters to merge, on which dev sets, and how to search their weights."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import UsageError
from ..models.device import DTYPES, resolve_dtype

OBJECTIVES = ("nll", "score")
SCORE_TASKS = ("gsm8k", "nlu", "exact", "safety", "builtin")
# Method knobs that can be searched, with the range searched by default (inside the method's own limits).
KNOB_RANGES = {"density": (0.05, 1.0), "drop_rate": (0.0, 0.95), "lam": (0.0, 2.0)}
_KNOB_LIMITS = {"density": (0.0, 1.0, "(0, 1]"), "drop_rate": (0.0, 1.0, "[0, 1)"), "lam": (-math.inf, math.inf, "")}
_KNOB = re.compile(r"^(?P<name>[a-z_-]+)(?:=(?P<lo>[^:]+):(?P<hi>.+))?$")


@dataclass
class SearchConfig:
    """A gradient-free search (CMA-ES) for per-adapter merge weights on one small dev set per task."""

    adapters: list[str] = field(default_factory=list, metadata={
        "help": "PEFT LoRA adapter folders or Hub ids, one per task", "cli": False})
    dev: list[str] = field(default_factory=list, metadata={
        "help": "one dev set per adapter, same order: FILE.jsonl, FILE?split=dev, builtin:NAME:dev, ..."})
    out: str = field(default="", metadata={
        "help": "output folder: the merged adapter at the best weights, best.json, search_log.jsonl, search.png"})
    method: str = field(default="cat", metadata={
        "help": "merge method (any of lorikit merge's except emr); cat and task-arithmetic are evaluated "
                "without re-merging"})
    objective: str = field(default="nll", metadata={
        "help": "nll: mean over tasks of the dev targets' per-token negative log-likelihood (one forward, fast); "
                "score: minus the mean dev score (generation, slow)", "choices": OBJECTIVES})
    budget: int = field(default=40, metadata={"help": "number of objective evaluations"})
    search: list[str] = field(default_factory=list, metadata={
        "help": "method knobs searched with the weights: density, drop_rate, lam, optionally NAME=LO:HI "
                "(default ranges density 0.05:1, drop_rate 0:0.95, lam 0:2)"})
    density: float | None = field(default=None, metadata={
        "help": "fixed TIES/magnitude-prune density when not searched"})
    drop_rate: float | None = field(default=None, metadata={"help": "fixed DARE drop rate when not searched"})
    lam: float | None = field(default=None, metadata={"help": "fixed λ when not searched", "aliases": ("--lambda",)})
    seed: int = field(default=0, metadata={"help": "seed of the search's CMA-ES samples"})
    init_weights: list[float] | None = field(default=None, metadata={
        "help": "starting weights (default 0.5 each, the LoRI reference's 3-adapter cat weight)"})
    bounds: list[float] = field(default_factory=lambda: [-1.5, 1.5], metadata={
        "help": "LO HI: range of every weight (LoraHub's default -1.5 1.5)"})
    sigma: float = field(default=0.2, metadata={"help": "CMA-ES initial step, as a fraction of each range"})
    popsize: int | None = field(default=None, metadata={"help": "CMA-ES population (default 4 + 3 ln d)"})
    l1: float = field(default=0.0, metadata={
        "help": "L1 penalty on the weights added to the objective: l1 · mean |w_i| (LoraHub uses 0.05)"})
    model: str | None = field(default=None, metadata={
        "help": "base model (default: the adapters' base_model_name_or_path)"})
    format: str = field(default="auto", metadata={"help": "dev data format: auto, alpaca, gsm8k, nlu"})
    limit: int | None = field(default=32, metadata={"help": "dev examples used per task (first N after --offset)"})
    offset: int = field(default=0, metadata={
        "help": "skip the first K rows of each dev set (e.g. those an eval stage scores with --limit K)"})
    dev_tasks: list[str] | None = field(default=None, metadata={
        "help": "--objective score: eval task per dev set (gsm8k, nlu, exact, safety, builtin; default builtin)"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "--objective score: tokens generated per answer"})
    batch_size: int = field(default=8, metadata={"help": "dev examples per forward pass"})
    max_length: int = field(default=512, metadata={"help": "dev example length cap (tokens), as in training"})
    max_prompt_length: int = field(default=256, metadata={"help": "dev prompt length cap (tokens), as in training"})
    rank: int | None = field(default=None, metadata={
        "help": "rank of the written adapter for delta-space methods (default: largest parent rank)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    dtype: str = field(default="auto", metadata={
        "help": "model dtype: auto (bfloat16 on a CPU with native bf16, float32 elsewhere), float32, bfloat16, float16",
        "choices": DTYPES})
    overwrite: bool = field(default=False, metadata={
        "help": "discard an existing --out (a finished search or another search's log) and start afresh"})

    def validate(self) -> None:
        """Refuse malformed requests before anything is loaded (UsageError naming the option)."""
        n = len(self.adapters)
        if n < 2:
            raise UsageError(f"adapters: merge-search needs at least two adapters, got {n}")
        if len(self.dev) != n:
            raise UsageError(f"--dev: {len(self.dev)} dev set(s) for {n} adapter(s) (give one per adapter, same order)")
        self.dtype = resolve_dtype(self.dtype, self.device)
        if not self.out:
            raise UsageError("--out: required")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"--objective {self.objective!r}: choose from {', '.join(OBJECTIVES)}")
        if self.budget < 1:
            raise UsageError(f"--budget {self.budget}: must be at least 1 evaluation")
        if len(self.bounds) != 2 or not all(map(math.isfinite, self.bounds)) or self.bounds[0] >= self.bounds[1]:
            raise UsageError(f"--bounds {self.bounds}: give two finite numbers LO < HI")
        if self.init_weights is not None:
            if len(self.init_weights) != n:
                raise UsageError(f"--init-weights: {len(self.init_weights)} weight(s) for {n} adapter(s)")
            lo, hi = self.bounds
            bad = [w for w in self.init_weights if not (math.isfinite(w) and lo <= w <= hi)]
            if bad:
                raise UsageError(f"--init-weights: {bad[0]} is not a number within --bounds {lo} {hi}")
        if not 0.0 < self.sigma <= 1.0:
            raise UsageError(f"--sigma {self.sigma}: must be in (0, 1] (a fraction of each range)")
        if self.popsize is not None and self.popsize < 2:
            raise UsageError(f"--popsize {self.popsize}: must be at least 2")
        if not (math.isfinite(self.l1) and self.l1 >= 0):
            raise UsageError(f"--l1 {self.l1}: must be a finite number >= 0")
        if self.offset < 0:
            raise UsageError(f"--offset {self.offset}: must be >= 0")
        for name in ("limit", "batch_size", "max_length", "max_prompt_length", "max_new_tokens", "rank"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {value}: must be positive")
        self._validate_score()
        knobs = self.knob_ranges()
        for name in knobs:
            if getattr(self, name) is not None:
                raise UsageError(f"--{name.replace('_', '-')}: fixed and searched (--search {name}); choose one")

    def _validate_score(self) -> None:
        if self.objective != "score":
            for name in ("dev_tasks", "max_new_tokens"):
                if getattr(self, name) is not None:
                    raise UsageError(f"--{name.replace('_', '-')}: only used with --objective score")
            return
        tasks = self.score_tasks()
        if len(tasks) != len(self.adapters):
            raise UsageError(f"--dev-tasks: {len(tasks)} task(s) for {len(self.adapters)} adapter(s)")
        for task, spec in zip(tasks, self.dev):
            if task not in SCORE_TASKS:
                raise UsageError(f"--dev-tasks {task!r}: choose from {', '.join(SCORE_TASKS)}")
            if task == "builtin" and not spec.startswith("builtin:"):
                raise UsageError(f"--dev {spec}: not builtin: data; name its eval task with --dev-tasks "
                                 f"({', '.join(t for t in SCORE_TASKS if t != 'builtin')})")

    def score_tasks(self) -> list[str]:
        return list(self.dev_tasks) if self.dev_tasks is not None else ["builtin"] * len(self.dev)

    def knob_ranges(self) -> dict[str, tuple[float, float]]:
        """The searched method knobs and their ranges, in ``--search`` order."""
        found: dict[str, tuple[float, float]] = {}
        for text in self.search:
            m = _KNOB.match(text.strip())
            name = m.group("name").replace("-", "_") if m else ""
            name = "lam" if name == "lambda" else name
            if name not in KNOB_RANGES:
                raise UsageError(f"--search {text!r}: expected NAME or NAME=LO:HI with NAME one of "
                                 f"density, drop_rate, lambda")
            if name in found:
                raise UsageError(f"--search {name}: given twice")
            lo, hi = KNOB_RANGES[name]
            if m.group("lo") is not None:
                try:
                    lo, hi = float(m.group("lo")), float(m.group("hi"))
                except ValueError as exc:
                    raise UsageError(f"--search {text!r}: LO and HI must be numbers") from exc
            floor, ceil, shown = _KNOB_LIMITS[name]
            ok = math.isfinite(lo) and math.isfinite(hi) and lo < hi
            ok = ok and (lo > floor if name == "density" else lo >= floor)
            ok = ok and (hi <= ceil if name == "density" else hi < ceil)
            if not ok:
                where = f" within {shown}" if shown else ""
                raise UsageError(f"--search {text!r}: the range must be finite numbers LO < HI{where}")
            found[name] = (lo, hi)
        return found

    def fixed_knobs(self) -> dict[str, float]:
        """Knobs given a fixed value (the method's defaults apply to the others)."""
        return {k: getattr(self, k) for k in KNOB_RANGES if getattr(self, k) is not None}

    def start(self) -> list[float]:
        return list(self.init_weights) if self.init_weights is not None else [0.5] * len(self.adapters)
