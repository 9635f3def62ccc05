"""Several adapters trained in one process over one copy of the frozen base: ``train_many``.

Each run (one ``TrainConfig``) is set up exactly as ``lorikit train`` sets it up — ``Trainer``'s
own code, on a shell of the base model (its own module objects, the base's weight tensors
shared, so the base is in memory once) — and keeps its own data order, optimizer, learning-rate
schedule, gradient clipping, early stopping, logs and output folder, written as the solo run
writes it. The training steps run on the base model itself: every adapted Linear becomes a
``MixedLoraLinear`` (``mixed_lora.py``), which runs the frozen base GEMM once over the rows of all
runs and each run's A and B on its own rows only. Step t is step t of every run still training:
their micro-batches are stacked (padded to the longest) and the loss is Σ_k CE_k / N_k, so run
k's gradient is its solo gradient (rows do not interact in a decoder and the base is frozen). A
run that ends — its step budget reached, or stopped by its dev loss — is written at once and
leaves the batch; the others go on.

Equality with solo runs: same data order, same initial adapter, same dropout masks — each run
draws them from its own generator, which starts in the state the global generator has when the
solo run's loop starts, in the solo run's shapes. What differs is summation order in floating
point (base GEMMs over more rows, attention over more padded keys, per-run loss sums), so the
weights agree to float tolerance (``tests/test_train_many.py``), not bitwise. Dev losses run
through each run's own PEFT model, as alone. The seconds recorded per step are the joint step's.

Not here: torchrun, ``--fp16``, ``--save-every`` / ``--resume``, ``--grad-checkpointing`` (its
recomputation would redraw dropout from the global generator), 4-bit bases and heads trained in
full (classification).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import LorikitError, UsageError
from ..models import resolve_device
from ..utils.atomic import check_output_dir, output_lock
from .config import TrainConfig
from .distributed import Single, launched_by_torchrun
from .early_stop import EarlyStopping
from .heads import HEADS
from .loss import sft_loss_sums_by_group
from .mixed_lora import RowRoute, install_mixed
from .reporting import interval_record
from .schedule import build_scheduler, warmup_steps
from .trainer import Trainer, step_schedule, steps_per_epoch, use_deterministic_kernels

log = logging.getLogger(__name__)

SHARED = ("model", "dtype", "device", "bf16", "logits", "deterministic")  # one base model, one forward


def train_many(configs: list[TrainConfig]) -> list[Path]:
    """Train every adapter of ``configs`` in one process over one copy of the base model (see the
    module doc); returns their output folders, in order."""
    return MultiTrainer(configs).run()


def check_configs(configs: list[TrainConfig]) -> None:
    """One line naming the run and setting for anything a joint run cannot do."""
    if not configs:
        raise UsageError("train_many: give at least one training config")
    if launched_by_torchrun():
        raise UsageError("train_many: single process only (not under torchrun)")
    first = configs[0]
    for i, cfg in enumerate(configs):
        where = f"train_many: run {i + 1} ({cfg.out})"
        for name in SHARED:
            if getattr(cfg, name) != getattr(first, name):
                raise UsageError(f"{where}: --{name.replace('_', '-')} {getattr(cfg, name)!r} differs from run 1's "
                                 f"{getattr(first, name)!r}; runs trained together share one base model and forward")
        refused = [flag for _, flag in cfg.joint_refusals()]
        if refused:
            raise UsageError(f"{where}: {refused[0]} is not supported when training several adapters together")
        for j, other in enumerate(configs[:i]):
            mine, theirs = Path(cfg.out).resolve(), Path(other.out).resolve()
            if mine == theirs or theirs in mine.parents or mine in theirs.parents:
                raise UsageError(f"{where}: --out overlaps run {j + 1}'s --out {other.out}; give each run its own folder")
        check_output_dir(cfg.out, cfg.overwrite, Trainer(cfg).inputs() + [c.out for c in configs if c is not cfg])


def shell_of(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model``'s modules that shares its parameters and buffers (no weight is copied)."""
    memo: dict[int, Any] = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


@dataclass
class Run:
    """One adapter of the joint run and the state its solo run would hold."""

    index: int
    trainer: Trainer
    bundle: Any
    peft_model: Any
    plan: Any
    params: list
    n_rows: int
    schedule: list[list]
    optimizer: Any
    scheduler: Any
    model: Any  # the run's own PEFT model with its loss as forward: dev losses
    generator: torch.Generator
    reporter: Any
    done: bool = False


class MultiTrainer:
    """Set up every run on one base model, step them together, write each as it ends."""

    def __init__(self, configs: list[TrainConfig]):
        check_configs(configs)
        self.configs = list(configs)
        self.device = resolve_device(configs[0].device)

    def run(self) -> list[Path]:
        with contextlib.ExitStack() as stack:  # one run at a time per --out, as ``lorikit train``
            for cfg in self.configs:
                stack.enter_context(output_lock(cfg.out))
            return self._run()

    def _run(self) -> list[Path]:
        first = self.configs[0]
        if first.deterministic:
            use_deterministic_kernels()
        bundle = HEADS[first.head].load_model(first)
        runs = [self.set_up(i, cfg, bundle) for i, cfg in enumerate(self.configs)]
        route = install_mixed(bundle.model, [r.peft_model for r in runs], [r.generator for r in runs])
        bundle.model.to(self.device).train()
        self.host, self.runs = bundle.model, runs  # kept for inspection by callers/tests
        self.t_start = time.perf_counter()
        try:
            self.steps(runs, route, bundle.tokenizer.pad_token_id)
        finally:
            for r in runs:
                r.reporter.close()
        return [Path(cfg.out) for cfg in self.configs]

    def set_up(self, index: int, cfg: TrainConfig, bundle) -> Run:
        """Run ``index`` as ``Trainer._run`` sets it up, in the same order (the global generator's
        state after it is where the solo run's dropout draws start)."""
        trainer = Trainer(cfg)
        trainer.device = self.device
        torch.manual_seed(trainer.run_seed.used)
        run_bundle, peft_model, plan, plan_names, examples, tokenized = trainer.set_up(
            replace(bundle, model=shell_of(bundle.model)))
        model = Single(self.device).prepare(peft_model, trainer.loss_sum, cfg.bf16)
        model.train()
        params = [dict(peft_model.named_parameters())[n] for n in plan_names]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                      weight_decay=cfg.weight_decay, fused=True)
        trainer.peft_model, trainer.optimizer = peft_model, optimizer
        schedule = step_schedule(cfg, [len(t.input_ids) for t in tokenized], trainer.run_seed.used)
        scheduler = build_scheduler(cfg.lr_scheduler, optimizer, len(schedule),
                                    warmup_steps(len(schedule), cfg.warmup_steps, cfg.warmup_ratio),
                                    cfg.lr_scheduler_kwargs)
        trainer.stopper = EarlyStopping.create(cfg, trainer, bundle.tokenizer, plan.parameters(),
                                               steps_per_epoch(cfg, len(tokenized)))
        generator = torch.Generator().set_state(torch.get_rng_state())
        return Run(index, trainer, run_bundle, peft_model, plan, params, len(examples),
                   [[tokenized[j] for j in step] for step in schedule], optimizer, scheduler, model, generator,
                   trainer.reporter(True))

    def steps(self, runs: list[Run], route: RowRoute, pad_id: int) -> None:
        """Joint steps until every run has ended; each run is written when it ends."""
        bar = tqdm(total=max(len(r.schedule) for r in runs), desc=f"train {len(runs)} adapters", unit="step",
                   dynamic_ncols=True, smoothing=0.1)
        step = 0
        while active := [r for r in runs if not r.done]:
            t0 = time.perf_counter()
            results = self.accumulate(active, step, route, pad_id)
            seconds = time.perf_counter() - t0
            for r in active:
                self.finish_step(r, step, *results[r.index], seconds)
            bar.update(1)
            bar.set_postfix(adapters=len(active), tok_s=f"{sum(u for _, u in results.values()) / seconds:.0f}")
            step += 1
        bar.close()

    def accumulate(self, active: list[Run], step: int, route: RowRoute, pad_id: int) -> dict[int, tuple[float, int]]:
        """Forward/backward step ``step`` of every active run, micro-batch by micro-batch, stacked:
        {run index: (mean loss, units it averages over)}, as ``Trainer._accumulate`` per run."""
        single = Single(self.device)
        made = {}
        for r in active:
            items, cfg = r.schedule[step], r.trainer.cfg
            micro = single.micro_batches(list(range(len(items))), cfg.batch_size, cfg.grad_accum)
            made[r.index] = [r.trainer.make_batch([items[j] for j in m], pad_id) for m in micro]
        units = {k: sum(n for _, n in batches) for k, batches in made.items()}
        totals = dict.fromkeys(made, 0.0)
        cfg = active[0].trainer.cfg
        for m in range(max(len(b) for b in made.values())):
            parts = [(k, batches[m][0]) for k, batches in made.items() if m < len(batches)]
            batch, spans, row_group = stack_batches(parts, len(self.runs), pad_id)
            route.set(spans)
            batch = {key: v.to(self.device) for key, v in batch.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                sums = sft_loss_sums_by_group(self.host, batch, row_group, len(parts), cfg.logits == "supervised")
            scale = torch.tensor([1.0 / max(1, units[k]) for k, _ in parts], device=sums.device)
            (sums * scale).sum().backward()
            for (k, _), value in zip(parts, sums.detach().tolist()):
                totals[k] += value
        return {k: (totals[k] / max(1, units[k]), units[k]) for k in made}

    def finish_step(self, r: Run, step: int, loss: float, n_units: int, seconds: float) -> None:
        """``Trainer._steps``' update, logging and early stopping for one run; writes it when it ends."""
        cfg = r.trainer.cfg
        grad_norm = float(torch.nn.utils.clip_grad_norm_(r.params, cfg.max_grad_norm)) if cfg.max_grad_norm else None
        r.optimizer.step()
        r.scheduler.step()
        r.optimizer.zero_grad(set_to_none=True)
        r.plan.after_step()
        if not math.isfinite(loss):
            raise LorikitError(f"{cfg.out}: step {step + 1}: loss is {loss} (lower --lr or check the data)")
        record = {"step": step + 1, "loss": loss, "lr": r.scheduler.get_last_lr()[0], r.trainer.head.unit: n_units,
                  "grad_norm": grad_norm, "seconds": seconds}
        trainer = r.trainer
        trainer.log.append(record)
        if (step + 1) % cfg.log_every == 0 or step + 1 == len(r.schedule):
            r.reporter.log(interval_record(trainer.log[step // cfg.log_every * cfg.log_every:]))
        stopped = trainer.stopper is not None and trainer.stopper.after_step(step + 1, len(r.schedule), r.model, record)
        if stopped or step + 1 == len(r.schedule):
            self.write(r)

    def write(self, r: Run) -> None:
        """The run's adapter folder, as ``Trainer.run`` writes it (the best dev-loss step's weights)."""
        trainer = r.trainer
        if trainer.stopper:
            trainer.stopper.restore_best()
        r.plan.finalize()
        trainer.save(r.bundle, r.peft_model, r.plan, r.n_rows, time.perf_counter() - self.t_start)
        r.done = True
        log.info("%s: written after %d steps", trainer.cfg.out, len(trainer.log))


def stack_batches(parts: list[tuple[int, dict]], n_runs: int, pad_id: int):
    """Stack runs' micro-batches (each right-padded to its own length) into one, padded to the
    longest: (batch, the route's spans, each row's group = its position in ``parts``)."""
    length = max(b["input_ids"].shape[1] for _, b in parts)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": -100}
    stacked: dict[str, list] = {key: [] for key in fill}
    spans: list[tuple[int, int, int] | None] = [None] * n_runs
    groups, start = [], 0
    for g, (k, b) in enumerate(parts):
        rows, own = b["input_ids"].shape
        for key, value in fill.items():
            stacked[key].append(torch.nn.functional.pad(b[key], (0, length - own), value=value))
        spans[k] = (start, start + rows, own)
        groups.append(torch.full((rows,), g, dtype=torch.long))
        start += rows
    return {key: torch.cat(v) for key, v in stacked.items()}, spans, torch.cat(groups)
