"""Supervised fine-tuning of one adapter, on one process or data-parallel under torchrun.

Loss = Σ CE over response tokens of the global batch / number of those tokens (token-level mean
over all micro-batches, so gradient accumulation and data-parallel splits give the same update).
AdamW (β 0.9/0.999, eps 1e-8, weight decay 0 by default), constant learning rate by default (any
Hugging Face schedule and warm-up: ``schedule.py``), per-step gradient-norm clipping — the reference's
settings. The batch order is a function of (seed, epoch) only, so the step reached is the data
position a resume checkpoint needs (``checkpoint.py``); sharding lives in ``distributed.py``.

``--head classification`` swaps model, data, batches and loss (the head strategies of ``heads.py``;
``train/classification.py``: mean cross-entropy / squared error over examples, head trained
through ``modules_to_save``); the loop,
optimizer and schedule are shared. ``--init osrm`` replaces A after the adapter is attached
(``osrm/init.py``); ``--freeze A`` then turns A's gradient off.
"""

from __future__ import annotations

import contextlib
import logging
import json
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._version import __version__
from ..adapters.config import RunSeed
from ..adapters.methods import get_method
from ..adapters.inits import get_init
from ..adapters.starts import build_adapter
from ..data.loading import check_source
from ..errors import LorikitError, UsageError
from ..models import resolve_device
from ..utils.atomic import atomic_output_dir, check_output_dir, output_lock
from . import distributed
from .batching import length_grouped_batches, random_batches
from .adapter_out import write_adapter
from .checkpoint import (Checkpointer, NoUsableCheckpoint, carry_run_outputs, checkpoints, claim_checkpoint_dir,
                         only_run_outputs, open_run_output, resume_state_for, write_adapter_checkpoint)
from .config import TrainConfig
from .heads import HEADS
from .early_stop import EarlyStopping
from .progress import Throughput
from .reporting import Reporter, default_logging_dir, interval_record, logged_records
from .schedule import build_scheduler, warmup_steps

log = logging.getLogger(__name__)


def steps_per_epoch(cfg: TrainConfig, n_examples: int) -> int:
    """Optimizer steps of one pass over the data (the last batch of an epoch may be smaller)."""
    return max(1, math.ceil(n_examples / (cfg.batch_size * cfg.grad_accum)))


def total_steps(cfg: TrainConfig, n_examples: int) -> int:
    per_epoch = steps_per_epoch(cfg, n_examples)
    return cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(per_epoch * cfg.epochs))


def step_schedule(cfg: TrainConfig, lengths: list[int], seed: int) -> list[list[int]]:
    """Indices of every optimizer step of the run, epochs concatenated, cut at the step budget.

    ``lengths`` are the examples' token counts: with ``group_by_length`` each batch holds examples
    of similar length (``batching.py``), otherwise the order is a plain shuffle."""
    steps = total_steps(cfg, len(lengths))
    global_batch = cfg.batch_size * cfg.grad_accum
    schedule: list[list[int]] = []
    epoch = 0
    while len(schedule) < steps:
        if cfg.group_by_length:
            schedule.extend(length_grouped_batches(lengths, global_batch, seed, epoch))
        else:
            schedule.extend(random_batches(len(lengths), global_batch, seed, epoch))
        epoch += 1
    return schedule[:steps]


class Trainer:
    """Builds model, data and adapter from a ``TrainConfig`` and runs the loop."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.log: list[dict[str, Any]] = []
        # The run's seed (resolved once by the config; a LoRI-S or continual start takes its
        # source adapter's when it is built) and the adapter actually trained: the method
        # --from/--mask select, with that seed (the build updates it to the source's shape, seed and A).
        self.run_seed = cfg.run_seed
        self.adapter = replace(cfg.adapter, method=cfg.train_method.name, seed=cfg.run_seed.value)
        self.head = HEADS[cfg.head]
        self.init_record: dict | None = None
        self.stopper: EarlyStopping | None = None

    # ---- set-up ---------------------------------------------------------------------------
    def load_data(self, tokenizer):
        return self.head.load_data(self.cfg, tokenizer, self.run_seed.used)

    def build_model(self, bundle=None):
        """(bundle, PEFT model, plan): the base model (loaded unless ``bundle`` is given) with this run's adapter."""
        cfg = self.cfg
        bundle = bundle if bundle is not None else self.head.load_model(cfg)
        attach = self.head.attach_options(bundle.model)
        init = None
        if cfg.init != "default":  # a data-driven init replaces A (B = 0) and records how
            chosen = get_init(cfg.init)
            init = (chosen, getattr(cfg, chosen.config_field))
        built = build_adapter(bundle, cfg.train_method, self.adapter, mask=cfg.mask, from_adapter=cfg.from_adapter,
                              init=init, freeze_a=cfg.freeze == "A", **attach)
        self.adapter, self.init_record = built.adapter, built.init_record
        if self.run_seed.origin == "adapter":
            self.run_seed = RunSeed(self.adapter.seed, "adapter")
        return bundle, built.peft_model, built.plan

    def loss_sum(self, model, batch) -> torch.Tensor:
        return self.head.loss_sum(self.cfg, model, batch)

    def make_batch(self, items, pad_id) -> tuple[dict[str, torch.Tensor], int]:
        """(batch tensors, units the loss is averaged over: response tokens or examples)."""
        return self.head.make_batch(self.cfg, items, pad_id)

    # ---- loop -----------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        if cfg.resume_from:  # a missing resume state fails here, before the model is loaded
            resume_state_for(cfg.resume_from)
        check_source(cfg.data)  # likewise a missing data file (the load takes seconds to minutes)
        if cfg.dev_data:
            check_source(cfg.dev_data, "--dev-data")
        # a resumed run's <out> holds its checkpoint-N adapters and runs/ until the final adapter is written
        check_output_dir(cfg.out, cfg.overwrite or (cfg.resuming and only_run_outputs(cfg.out)), self.inputs())
        dist = distributed.setup(cfg.device, cfg.batch_size * cfg.grad_accum)
        try:
            # One run at a time per --out: a second one would mix its checkpoints into <out>.ckpt.
            with output_lock(cfg.out) if dist.is_main else contextlib.nullcontext():
                return self._run(dist)
        finally:
            dist.close()

    def inputs(self) -> list[str | None]:
        """Files and folders this run reads: --out must not hold any of them."""
        return self.cfg.inputs()

    def _run(self, dist) -> Path:
        cfg = self.cfg
        self.device = dist.device
        if cfg.shared_prefix and dist.sharded:
            # FSDP2 gathers and frees each layer around one forward; the shared pass would be a second
            # forward of every layer before one backward, which this trainer has not been checked under
            raise distributed.AgreedError("--shared-prefix: single process only (not under torchrun)", UsageError.exit_code)
        claim_checkpoint_dir(cfg, dist)
        if cfg.deterministic:
            use_deterministic_kernels()
        torch.manual_seed(self.run_seed.used)
        bundle, peft_model, plan, plan_names, examples, tokenized = dist.agree(self.set_up)
        if cfg.grad_checkpointing:
            enable_grad_checkpointing(peft_model.get_base_model())
        model = dist.prepare(peft_model, self.loss_sum, cfg.bf16)
        model.train()
        params = [dict(peft_model.named_parameters())[n] for n in plan_names]
        # One fused kernel for all tensors instead of a Python loop over them (hundreds of small
        # LoRA factors); FSDP2's sharded DTensors keep the default implementation.
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                      weight_decay=cfg.weight_decay, fused=not dist.sharded or None)
        self.peft_model, self.optimizer = peft_model, optimizer  # kept for inspection by callers/tests
        if cfg.fp16 and dist.sharded:
            raise UsageError("--fp16: single process only (under torchrun use --bf16)")
        # --fp16: float16 activations need loss scaling (transformers.Trainer's fp16 does the same)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.fp16)
        schedule = step_schedule(cfg, [len(t.input_ids) for t in tokenized], self.run_seed.used)
        scheduler = build_scheduler(cfg.lr_scheduler, optimizer, len(schedule),
                                    warmup_steps(len(schedule), cfg.warmup_steps, cfg.warmup_ratio), cfg.lr_scheduler_kwargs)
        trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
        ckpt = Checkpointer(cfg, dist, model, trainable, optimizer, scheduler, self.adapter)
        if cfg.evaluating and dist.sharded:
            raise UsageError("--eval-every/--eval-strategy epoch: not supported under torchrun (single process only)")
        self.stopper = EarlyStopping.create(cfg, self, bundle.tokenizer, plan.parameters(),
                                            steps_per_epoch(cfg, len(tokenized)))
        ckpt.early_stop = self.stopper
        first_step = self.resume(ckpt, dist) if cfg.resuming else 0
        t_start = time.perf_counter()
        if not cfg.resume_state_only:
            ckpt.write_adapter = lambda step: self.save_checkpoint_adapter(
                step, peft_model, lambda: self.metadata(bundle, plan, len(examples), time.perf_counter() - t_start), dist)
        reporter = self.reporter(dist.is_main)
        try:
            self._steps(model, dist, plan, params, (optimizer, scheduler, ckpt, reporter),
                        [[tokenized[j] for j in step] for step in schedule], bundle.tokenizer.pad_token_id,
                        first_step)
        finally:
            reporter.close()
        if self.stopper:
            self.stopper.restore_best()
        if not dist.sharded:  # sharded: the gather in save() evaluates the plan's parametrizations
            plan.finalize()
        return self.save(bundle, peft_model, plan, len(examples), time.perf_counter() - t_start, dist)

    def _steps(self, model, dist, plan, params, state, schedule: list[list], pad_id: int, first_step: int) -> None:
        """The optimizer steps from ``first_step`` on (each a list of examples); stops early when told."""
        cfg = self.cfg
        optimizer, scheduler, ckpt, reporter = state
        bar = tqdm(range(first_step, len(schedule)), initial=first_step, total=len(schedule),
                   desc=f"train {self.adapter.method}", unit="step", dynamic_ncols=True, disable=not dist.is_main,
                   smoothing=0.1)
        throughput = Throughput(self.head.rate)
        for step in bar:
            t0 = time.perf_counter()
            loss, n_units = self._accumulate(model, dist, schedule[step], pad_id)
            self.scaler.unscale_(optimizer)  # clip the true gradients (no-op without --fp16)
            grad_norm = dist.clip_grad_norm(params, cfg.max_grad_norm) if cfg.max_grad_norm else None
            self.scaler.step(optimizer)  # skipped when --fp16 overflowed; then the scale is lowered
            self.scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            plan.after_step()
            if not math.isfinite(loss):
                raise dist.error(f"step {step + 1}: loss is {loss} (lower --lr or check the data)")
            record = {"step": step + 1, "loss": loss, "lr": scheduler.get_last_lr()[0],
                      self.head.unit: n_units,
                      "grad_norm": grad_norm, "seconds": time.perf_counter() - t0}
            self.log.append(record)
            if (step + 1) % cfg.log_every == 0 or step + 1 == len(schedule):
                reporter.log(interval_record(self.log[step // cfg.log_every * cfg.log_every:]))
            bar.set_postfix(loss=f"{loss:.4f}", **throughput.update(step - first_step, n_units, record["seconds"]))
            if self.stopper and self.stopper.after_step(step + 1, len(schedule), model, record):
                break
            # after the dev evaluation of this step: a resumed run must not score it again
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < len(schedule):
                ckpt.save(step + 1, self.log)
        bar.close()

    def set_up(self, bundle=None):
        """Model, adapter, plan (its parameters by name: FSDP2 replaces every Parameter) and data."""
        bundle, peft_model, plan = self.build_model(bundle)
        names = {id(p): n for n, p in peft_model.named_parameters()}
        plan_names = [names.get(id(p)) for p in plan.parameters()]
        if None in plan_names:
            raise LorikitError("training plan: a trainable tensor is not a parameter of the model")
        if not plan_names:
            raise LorikitError("nothing to train: every parameter is frozen")
        return bundle, peft_model, plan, plan_names, *self.load_data(bundle.tokenizer)

    def _accumulate(self, model, dist, items: list, pad_id: int) -> tuple[float, int]:
        """Forward/backward every micro-batch of one optimizer step: (mean loss, units it averages over)."""
        cfg = self.cfg
        micro = dist.micro_batches(list(range(len(items))), cfg.batch_size, cfg.grad_accum)
        # A rank with an empty share still runs the pass (FSDP's collectives must line up),
        # on a stand-in example whose loss is weighted 0.
        made = [(self.make_batch([items[j] for j in (m or [0])], pad_id), 1.0 if m else 0.0) for m in micro]
        n_units = int(dist.sum([float(sum(units for (_, units), w in made if w))])[0])
        # FSDP's mixed-precision policy casts the gathered weights; a single process autocasts.
        autocast = (cfg.bf16 or cfg.fp16) and not dist.sharded
        dtype = torch.float16 if cfg.fp16 else torch.bfloat16
        local_loss = 0.0
        for (batch, _), weight in made:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=dtype, enabled=autocast):
                loss_sum = model(batch)
            self.scaler.scale(loss_sum * weight / max(1, n_units)).backward()
            local_loss += weight * float(loss_sum.detach())
        return dist.sum([local_loss])[0] / max(1, n_units), n_units

    def reporter(self, is_main: bool) -> Reporter:
        """The --report-to trackers (rank 0 only)."""
        cfg = self.cfg
        summary = {"method": self.adapter.method, "seed": self.run_seed.value, "lr": cfg.lr, "rank": self.adapter.rank,
                   "data": cfg.data, "model": cfg.model}
        targets = cfg.report_to if is_main else []
        if not cfg.logging_dir and [t for t in targets if t != "none"]:
            open_run_output(cfg.out)
        return Reporter(targets, cfg.logging_dir or default_logging_dir(cfg.out), Path(cfg.out).name, summary)

    def resume(self, ckpt: Checkpointer, dist) -> int:
        """Restore ``--resume-from``'s checkpoint or the newest complete one; returns the step to continue from."""
        if self.cfg.resume_from:
            path = resume_state_for(self.cfg.resume_from)
            step, self.log = dist.agree(lambda: ckpt.load(path))
            if dist.is_main:
                log.info("resuming from %s (step %d)", path, step)
            return step
        found = checkpoints(ckpt.root)
        if not found:
            if dist.is_main:
                log.info("--resume: no checkpoint in %s, starting at step 0", ckpt.root)
            return 0
        for i, path in enumerate(found):
            try:
                step, self.log = dist.agree(lambda: ckpt.load(path))
            except UsageError:
                raise  # changed settings: an older checkpoint has them too
            except LorikitError as exc:
                if i + 1 == len(found):
                    raise NoUsableCheckpoint(f"--resume: no complete checkpoint in {ckpt.root} (newest problem: "
                                       f"{exc}); rerun without --resume and with --overwrite") from exc
                if dist.is_main:
                    log.warning("--resume: %s; falling back to %s", exc, found[i + 1].name)
                continue
            if dist.is_main:
                log.info("resuming from %s (step %d)", path, step)
            return step
        raise AssertionError("unreachable")

    # ---- output ---------------------------------------------------------------------------
    def metadata(self, bundle, plan, n_rows: int, seconds: float) -> dict[str, Any]:
        cfg = self.cfg
        hyper = cfg.flat()
        for key in ("overwrite", "resume", "resume_from"):
            hyper.pop(key)
        return {
            "lorikit_version": __version__, "method": self.adapter.method, "seed": self.run_seed.value,
            "a_init": self.a_init_record(),
            "head": cfg.head, "num_labels": self.head.num_labels(cfg),
            "init": self.init_record or {"kind": "default"}, "freeze": cfg.freeze,
            "base_model": bundle.base_model_id,
            **({"base_weights": bundle.weights_note} if bundle.weights_note else {}),
            "rank": self.adapter.rank, "alpha": self.adapter.alpha,
            "target_modules": list(self.adapter.target_modules),
            "data": {"source": cfg.data, "format": cfg.format, "template": cfg.template, "rows": n_rows},
            "hyperparameters": hyper, "adapter_config": asdict(self.adapter),
            "train": {"steps": len(self.log), "final_loss": self.log[-1]["loss"] if self.log else None,
                      "seconds": round(seconds, 2), **plan.describe()},
            **plan.metadata(),
            **({"early_stopping": self.stopper.summary(len(self.log))} if getattr(self, "stopper", None) else {}),
        }

    def a_init_record(self) -> str:
        """How A started: a data-driven init's name, the seeded init of a LoRI method, or PEFT's own."""
        if self.cfg.init != "default":
            return self.cfg.init
        return self.adapter.a_init if get_method(self.adapter.method).freezes_a else "peft-kaiming"

    def save(self, bundle, peft_model, plan, n_rows: int, seconds: float, dist=None) -> Path:
        """Write the PEFT adapter (under torchrun: gathered in full, written by rank 0)."""
        cfg = self.cfg
        dist = dist or distributed.Single(self.device)
        meta = self.metadata(bundle, plan, n_rows, seconds)
        full_state = dist.full_adapter_state(peft_model)  # collective: every rank takes part

        def write():
            if not dist.is_main:
                return
            with atomic_output_dir(cfg.out, cfg.overwrite or only_run_outputs(cfg.out), self.inputs()) as tmp:
                write_adapter(tmp, peft_model, meta, full_state)
                with open(tmp / "train_log.jsonl", "w") as fh:
                    for rec in logged_records(self.log, cfg.log_every):
                        fh.write(json.dumps(rec) + "\n")
                carry_run_outputs(cfg.out, tmp)

        dist.agree(write)
        return Path(cfg.out)

    def save_checkpoint_adapter(self, step: int, peft_model, meta, dist) -> None:
        """``<out>/checkpoint-<step>/``: the adapter as it stands, a stock PEFT adapter like the final one."""
        state = dist.snapshot_adapter_state(peft_model)  # collective under torchrun
        if dist.is_main:
            write_adapter_checkpoint(self.cfg.out, step, self.cfg.keep_checkpoints,
                                     lambda folder: write_adapter(folder, peft_model, meta(), state))
        dist.barrier()


def enable_grad_checkpointing(causal_lm) -> None:
    """Non-reentrant activation checkpointing: works with frozen inputs (LoRI's frozen embeddings) and FSDP2."""
    if hasattr(causal_lm, "activation_checkpointing_enable"):  # transformers ≥ 5 name
        causal_lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def use_deterministic_kernels() -> None:
    """Make GPU runs repeatable: no atomics-based or autotuned kernels. cuBLAS reads its
    workspace setting when it first starts, which is after this (the model is not on the GPU
    yet); attention falls back to the math kernel, whose backward has no atomic adds."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    if torch.cuda.is_available():
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_math_sdp(True)


def train(cfg: TrainConfig) -> Path:
    """Train one adapter as ``cfg`` describes and return the output folder."""
    return Trainer(cfg).run()
