"""Learning-rate schedules: every step-wise ``transformers.SchedulerType``, built by
``transformers.get_scheduler`` with Hugging Face's warm-up (factor ``step / warmup`` during warm-up,
so the first step runs at lr 0 as in ``Trainer``).

The names are listed here (torch-free, for ``--help`` and config validation);
``tests/test_hf_conventions.py`` checks them against the installed transformers. Left out:
``reduce_lr_on_plateau`` and ``greedy``, which step on a metric, not per optimizer step.

lorikit's own ``constant`` kept its warm-up: with ``--warmup-steps`` it is Hugging Face's
``constant_with_warmup`` (HF's ``constant`` ignores warm-up).
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError

LR_SCHEDULERS = ("constant", "linear", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup",
                 "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay")
METRIC_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")


def warmup_steps(steps: int, warmup: int, ratio: float) -> int:
    """Warm-up steps of a run of ``steps``: ``warmup`` when given, else ⌈ratio · steps⌉ (HF's rule)."""
    return warmup if warmup > 0 else math.ceil(steps * ratio)


def build_scheduler(name: str, optimizer, steps: int, warmup: int, kwargs: dict[str, Any] | None = None):
    """``transformers.get_scheduler`` for ``name`` over ``steps`` optimizer steps."""
    from transformers import get_scheduler

    if name == "constant" and warmup:
        name = "constant_with_warmup"
    try:
        return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=steps,
                             scheduler_specific_kwargs=dict(kwargs or {}))
    except (TypeError, ValueError) as exc:  # a missing or unknown scheduler argument, or an old transformers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--lr-scheduler {name} with --lr-scheduler-kwargs {kwargs or {}}: {first}") from None
