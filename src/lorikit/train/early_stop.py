"""Training to convergence: dev loss every K steps, stop on a plateau, keep the best adapter.

The rule (the same for every method): every ``eval_every`` optimizer steps, or with
``--eval-strategy epoch`` at the end of each pass over the training data (every ⌈rows / global
batch⌉ steps, the epoch length of ``trainer.step_schedule``), and after the last step, the mean cross-entropy per response token on the dev examples is computed with dropout off.
An evaluation lower than the best so far by more than ``min_delta`` becomes the new best, and the
trainable tensors are copied aside. After ``patience`` evaluations in a row without a new best
training stops (``patience`` 0: never stop early, run to ``--max-steps``, still keep the best), but
not before step ``--min-steps``: a task whose dev loss sits at chance for a while before it is
learned (parity, pair-greater) would otherwise be stopped in that phase and kept at chance.
The adapter written is the best one; ``lorikit.json`` records the evaluations, the chosen step,
the step reached and why training ended (``plateau`` or ``cap``).

Dev data: ``--dev-data SPEC`` (any ``--data`` spec, e.g. ``builtin:NAME:dev``) or
``--dev-fraction F``, which carves a fixed-seed share of the training data out as dev
(``DATA?split=dev&fraction=F``; training then uses the rest, ``DATA?split=train&fraction=F``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from ..data import load_examples, tokenize
from ..data.templates import apply_template
from ..errors import LorikitError

logger = logging.getLogger(__name__)


class EarlyStopping:
    """Dev-loss tracking for one run; ``after_step`` says when to stop."""

    def __init__(self, cfg, trainer, tokenizer, params: list[torch.nn.Parameter], interval: int):
        self.cfg, self.trainer, self.params = cfg, trainer, params
        self.interval = interval  # optimizer steps between evaluations
        spec = cfg.dev_data  # TrainConfig always sets it: --dev-data, or the carve --dev-fraction names
        examples = load_examples(spec, cfg.format, limit=cfg.dev_limit, n_builtin=cfg.builtin_rows,
                                 seed=trainer.run_seed.used)  # the run's seed: the same carve as training
        examples = apply_template(cfg.template, tokenizer, examples)
        self.dev = [tokenize(tokenizer, e, cfg.max_length, cfg.max_prompt_length)
                    for e in examples]
        self.source = spec
        self.pad_id = tokenizer.pad_token_id
        self.history: list[dict[str, Any]] = []
        self.best_loss = math.inf
        self.best_step = 0
        self.best_state: list[torch.Tensor] | None = None
        self.bad_evals = 0
        self.reason = "cap"

    @classmethod
    def create(cls, cfg, trainer, tokenizer, params, steps_per_epoch: int) -> "EarlyStopping | None":
        if not cfg.evaluating:
            return None
        return cls(cfg, trainer, tokenizer, params, cfg.eval_every or steps_per_epoch)

    @torch.no_grad()
    def dev_loss(self, model) -> float:
        """Mean CE per supervised unit over the dev examples, dropout off."""
        was_training = model.training
        model.eval()
        total, units = 0.0, 0
        device = self.trainer.device
        bs = self.cfg.batch_size
        for i in range(0, len(self.dev), bs):
            batch, n = self.trainer.make_batch(self.dev[i:i + bs], self.pad_id)
            total += float(model({k: v.to(device) for k, v in batch.items()}))
            units += n
        model.train(was_training)
        if not units:
            raise LorikitError(f"{self.source}: the dev examples have no response tokens (raise --max-length)")
        return total / units

    def after_step(self, step: int, last_step: int, model, record: dict[str, Any]) -> bool:
        """Evaluate when due; returns True when training should stop now."""
        if step % self.interval and step != last_step:
            return False
        loss = self.dev_loss(model)
        record["dev_loss"] = loss
        self.history.append({"step": step, "dev_loss": loss})
        if loss < self.best_loss - self.cfg.min_delta:
            self.best_loss, self.best_step, self.bad_evals = loss, step, 0
            self.best_state = [p.detach().clone() for p in self.params]
        else:
            self.bad_evals += 1
        logger.info("step %d: dev loss %.4f (best %.4f at step %d)", step, loss, self.best_loss, self.best_step)
        if (self.cfg.patience and self.bad_evals >= self.cfg.patience and step >= self.cfg.min_steps
                and step != last_step):
            self.reason = "plateau"
            return True
        return False

    def state(self) -> dict[str, Any]:
        """What a resume checkpoint keeps of the tracking (JSON); the best tensors go in ``best_tensors``."""
        return {"history": self.history, "best_loss": None if math.isinf(self.best_loss) else self.best_loss,
                "best_step": self.best_step, "bad_evals": self.bad_evals, "reason": self.reason,
                "n_params": len(self.params)}

    def best_tensors(self) -> dict[str, torch.Tensor]:
        return {str(i): t.contiguous() for i, t in enumerate(self.best_state or [])}

    def load_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Continue the tracking where a checkpoint left it (a resumed run stops and chooses as an uninterrupted one)."""
        if state["n_params"] != len(self.params):
            raise ValueError(f"early stopping: {state['n_params']} tensors saved, the run trains {len(self.params)}")
        self.history = list(state["history"])
        self.best_loss = math.inf if state["best_loss"] is None else float(state["best_loss"])
        self.best_step, self.bad_evals, self.reason = int(state["best_step"]), int(state["bad_evals"]), state["reason"]
        if self.best_step and len(tensors) != len(self.params):
            raise ValueError(f"early stopping: the best step's tensors are missing ({len(tensors)} of {len(self.params)})")
        self.best_state = ([tensors[str(i)].to(p.device, p.dtype) for i, p in enumerate(self.params)]
                           if self.best_step else None)

    def restore_best(self) -> None:
        """Put the best evaluation's trainable tensors back into the model."""
        if self.best_state is None:
            return
        with torch.no_grad():
            for p, best in zip(self.params, self.best_state):
                p.copy_(best)

    def summary(self, steps_run: int) -> dict[str, Any]:
        return {"dev_data": self.source, "dev_examples": len(self.dev), "eval_every": self.interval,
                "eval_strategy": "epoch" if self.cfg.eval_strategy == "epoch" else "steps",
                "patience": self.cfg.patience, "min_delta": self.cfg.min_delta,
                "min_steps": self.cfg.min_steps, "chosen_step": self.best_step,
                "best_dev_loss": self.best_loss, "steps_run": steps_run, "step_cap": self.cfg.max_steps,
                "stopped": self.reason, "history": self.history}
