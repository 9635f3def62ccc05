"""A ``transformers.TrainerCallback`` that keeps a LoRI model correct through ``Trainer`` / TRL loops.

Works with ``transformers.Trainer``, TRL's ``SFTTrainer`` and anything built on them::

    model = get_lori_model(base, LoraConfig(...), method="lori-s", mask="runs/d/masks/0.9_mask.pt")
    trainer = SFTTrainer(model=model, args=..., train_dataset=..., callbacks=[LoriCallback()])

What it does:
- ``on_train_begin``: checks the model came from ``get_lori_model`` and that A is frozen.
- ``on_step_end`` (every ``check_every`` steps, default 1): LoRI-S masked entries of B are exactly
  zero (they are by construction; a failure means something else wrote B) and the loss is finite.
- ``on_save`` (every ``save_steps`` checkpoint and the final one): the checkpoint's adapter is a
  stock PEFT adapter (no parametrization keys, which ``PeftModel.from_pretrained`` would ignore),
  and ``lorikit.json`` (method, seed, mask, hyper-parameters, last loss) is written beside it and
  into ``output_dir`` (the folder ``push_to_hub`` uploads).
- ``on_train_end``: ``lorikit.json`` into ``output_dir`` with the final loss, so that
  ``trainer.save_model()`` / ``trainer.push_to_hub()`` leave a complete lorikit adapter.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from safetensors import safe_open
from transformers import TrainerCallback

from ..adapters.methods import find_method
from ..errors import LorikitError
from .peft_lori import lori_info, lori_plan, write_lori_metadata

logger = logging.getLogger(__name__)

ADAPTER_SAFE = "adapter_model.safetensors"
HYPER_KEYS = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
              "max_steps", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "seed", "bf16")


def check_stock_adapter(folder: str | Path) -> None:
    """Error if ``folder``'s adapter weights hold parametrization keys instead of plain lora_B weights."""
    path = Path(folder) / ADAPTER_SAFE
    if not path.is_file():
        return
    with safe_open(str(path), framework="pt") as fh:
        bad = [k for k in fh.keys() if "parametrizations" in k]
    if bad:
        raise LorikitError(f"{path}: key {bad[0]!r} is not a stock PEFT key (PEFT would ignore it)")


class LoriCallback(TrainerCallback):
    """Keep LoRI-S sparse and every save a stock PEFT adapter + ``lorikit.json``."""

    def __init__(self, check_every: int = 1, require_lori: bool = True):
        self.check_every = check_every
        self.require_lori = require_lori
        self.last_loss: float | None = None

    def _record(self, args, state) -> dict[str, Any]:
        hyper = {k: getattr(args, k, None) for k in HYPER_KEYS}
        losses = [rec["loss"] for rec in state.log_history if "loss" in rec]
        final = losses[-1] if losses else self.last_loss
        return {"hyperparameters": hyper, "trainer": "transformers.Trainer",
                "train": {"steps": state.global_step, "final_loss": final}}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        if lori_info(model) is None:
            if self.require_lori:
                raise LorikitError("LoriCallback: the model was not built by lorikit.integrations.get_lori_model")
            return
        method = find_method(lori_info(model).get("method"))
        frozen_a = method is not None and method.freezes_a
        trainable_a = [n for n, p in model.named_parameters() if "lora_A" in n and p.requires_grad]
        if frozen_a and trainable_a:
            raise LorikitError(f"LoriCallback: {trainable_a[0]} is trainable; LoRI's A must stay frozen")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        plan = lori_plan(model) if model is not None else None
        if plan is not None and self.check_every and state.global_step % self.check_every == 0:
            plan.check()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
            if not math.isfinite(self.last_loss):
                raise LorikitError(f"step {state.global_step}: loss is {self.last_loss} (lower the learning rate)")

    def on_save(self, args, state, control, model=None, **kwargs):
        if model is None or lori_info(model) is None:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        check_stock_adapter(folder)
        record = self._record(args, state)
        if folder.is_dir():
            write_lori_metadata(folder, model, record)
        if state.is_world_process_zero:
            write_lori_metadata(args.output_dir, model, record)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None or lori_info(model) is None or not state.is_world_process_zero:
            return
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        write_lori_metadata(args.output_dir, model, self._record(args, state))
