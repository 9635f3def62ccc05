"""How to decode (``GenerationConfig``): the typed config of ``lorikit generate`` and of evaluation.
Torch-free, so the command line's parser loads without it; the decoding loop is ``generate.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from ..utils.validate import check_number, check_seed


@dataclass
class GenerationConfig:
    """How to decode."""

    max_new_tokens: int = field(default=128, metadata={"help": "tokens generated per prompt at most"})
    batch_size: int = field(default=16, metadata={"help": "sequences decoded together (left-padded)"})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy decoding"})
    temperature: float = field(default=0.2, metadata={"help": "sampling temperature (with --do-sample)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass (with --do-sample)"})
    num_samples: int = field(default=1, metadata={"help": "completions per prompt (for pass@k)"})
    stop: list[str] = field(default_factory=list, metadata={"help": "cut each completion at the first of these strings"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise UsageError(f"--max-new-tokens {self.max_new_tokens}: must be positive")
        if self.batch_size <= 0:
            raise UsageError(f"--batch-size {self.batch_size}: must be positive")
        if self.num_samples <= 0:
            raise UsageError(f"--num-samples {self.num_samples}: must be positive")
        if self.num_samples > 1 and not self.do_sample:
            raise UsageError("--num-samples > 1 needs --do-sample (greedy decoding repeats itself)")
        if self.do_sample:
            check_number("--temperature", self.temperature, low=0, low_open=True)
            check_number("--top-p", self.top_p, low=0, high=1, low_open=True)
        check_seed("--seed", self.seed)
