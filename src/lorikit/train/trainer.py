"""Supervised fine-tuning of one adapter, on one process or data-parallel under torchrun.

Loss = Σ CE over response tokens of the global batch / number of those tokens (token-level mean
over all micro-batches, so gradient accumulation and data-parallel splits give the same update).
AdamW (β 0.9/0.999, eps 1e-8, weight decay 0 by default), constant learning rate by default with
optional warm-up and linear/cosine decay, per-step gradient-norm clipping — the reference's
settings. The batch order is a function of (seed, epoch) only, so the step reached is the data
position a resume checkpoint needs (``checkpoint.py``); sharding lives in ``distributed.py``.

``--head classification`` swaps the batches and the loss (``train/classification.py``: mean
cross-entropy / squared error over examples, head trained through ``modules_to_save``); the loop,
optimizer and schedule are shared. ``--init osrm`` replaces A after the adapter is attached
(``osrm/init.py``); ``--freeze A`` then turns A's gradient off.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..adapters.build import attach_adapter, lora_layers
from ..adapters.card import write_model_card
from ..data import collate, load_examples, tokenize_example
from ..errors import LorikitError, UsageError
from ..models import load_model
from ..utils.atomic import atomic_output_dir, check_output_dir
from . import distributed
from .batching import length_grouped_batches, random_batches
from .progress import Throughput
from .checkpoint import Checkpointer, claim_checkpoint_dir, latest_checkpoint
from .config import TrainConfig
from .loss import sft_loss_sum
from .plan import DensePlan
from .reporting import Reporter, default_logging_dir


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"--device {device!r}: unknown device") from exc


def total_steps(cfg: TrainConfig, n_examples: int) -> int:
    per_epoch = math.ceil(n_examples / (cfg.batch_size * cfg.grad_accum))
    return cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(per_epoch * cfg.epochs))


def lr_lambda(cfg: TrainConfig, steps: int):
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_scheduler == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
        if cfg.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def step_schedule(cfg: TrainConfig, lengths: list[int]) -> list[list[int]]:
    """Indices of every optimizer step of the run, epochs concatenated, cut at the step budget.

    ``lengths`` are the examples' token counts: with ``group_by_length`` each batch holds examples
    of similar length (``batching.py``), otherwise the order is a plain shuffle."""
    steps = total_steps(cfg, len(lengths))
    global_batch = cfg.batch_size * cfg.grad_accum
    schedule: list[list[int]] = []
    epoch = 0
    while len(schedule) < steps:
        if cfg.group_by_length:
            schedule.extend(length_grouped_batches(lengths, global_batch, cfg.adapter.seed, epoch))
        else:
            schedule.extend(random_batches(len(lengths), global_batch, cfg.adapter.seed, epoch))
        epoch += 1
    return schedule[:steps]


class Trainer:
    """Builds model, data and adapter from a ``TrainConfig`` and runs the loop."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.log: list[dict[str, Any]] = []

    # ---- set-up ---------------------------------------------------------------------------
    def load_data(self, tokenizer):
        cfg = self.cfg
        if cfg.head == "classification":
            from .classification import load_classification_data

            data = load_classification_data(cfg.data, tokenizer, cfg.num_labels, cfg.max_length, cfg.limit,
                                            seed=cfg.adapter.seed)
            return data, data
        examples = load_examples(cfg.data, cfg.format, limit=cfg.limit, n_builtin=cfg.builtin_rows,
                                 seed=cfg.adapter.seed)
        tokenized = [tokenize_example(tokenizer, e.prompt, e.response, cfg.max_length, cfg.max_prompt_length)
                     for e in examples]
        if not any(any(l != -100 for l in t.labels) for t in tokenized):
            raise LorikitError(f"{cfg.data}: no response tokens left after truncation (raise --max-length)")
        return examples, tokenized

    def build_model(self):
        cfg = self.cfg
        if cfg.mask or cfg.from_adapter:  # LoRI-S and continual learning start from another adapter
            from .from_adapter import build_from_adapter

            bundle = load_model(cfg.model, dtype=cfg.dtype, load_in_4bit=cfg.load_in_4bit)
            self.init_record = None
            peft_model, plan = build_from_adapter(bundle, cfg)
            return bundle, peft_model, plan
        if cfg.head == "classification":
            from .classification import head_modules

            bundle = load_model(cfg.model, head="classification", num_labels=cfg.num_labels, dtype=cfg.dtype,
                                load_in_4bit=cfg.load_in_4bit)
            peft_model = attach_adapter(bundle.model, cfg.adapter, bundle.base_model_id, task_type="SEQ_CLS",
                                        modules_to_save=head_modules(bundle.model))
        else:
            bundle = load_model(cfg.model, dtype=cfg.dtype, load_in_4bit=cfg.load_in_4bit)
            peft_model = attach_adapter(bundle.model, cfg.adapter, bundle.base_model_id)
        self.init_record = None
        if cfg.init == "osrm":
            from ..osrm.init import apply_osrm_init

            self.init_record = apply_osrm_init(peft_model, cfg.osrm_stats, cfg.task, cfg.osrm_mode,
                                               cfg.osrm_scale, bundle.base_model_id)
        if cfg.freeze == "A":
            for _, layer in lora_layers(peft_model):
                layer.lora_A["default"].weight.requires_grad_(False)
        return bundle, peft_model, DensePlan(peft_model)

    def loss_sum(self, model, batch) -> torch.Tensor:
        if self.cfg.head == "classification":
            from .classification import classification_loss_sum

            return classification_loss_sum(model, batch, self.cfg.num_labels)[0]
        return sft_loss_sum(model, batch, self.cfg.logits == "supervised")[0]

    def make_batch(self, items, pad_id) -> tuple[dict[str, torch.Tensor], int]:
        """(batch tensors, units the loss is averaged over: response tokens or examples)."""
        if self.cfg.head == "classification":
            from .classification import collate_classification

            return collate_classification(items, pad_id, self.cfg.num_labels), len(items)
        batch = collate(items, pad_id)
        return batch, int((batch["labels"][:, 1:] != -100).sum())

    # ---- loop -----------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        check_output_dir(cfg.out, cfg.overwrite)
        dist = distributed.setup(cfg.device, cfg.batch_size * cfg.grad_accum, resolve_device)
        try:
            return self._run(dist)
        finally:
            dist.close()

    def _run(self, dist) -> Path:
        cfg = self.cfg
        self.device = dist.device
        claim_checkpoint_dir(cfg, dist)
        if cfg.deterministic:
            use_deterministic_kernels()
        torch.manual_seed(cfg.adapter.seed)

        def set_up():
            bundle, peft_model, plan = self.build_model()
            # FSDP2 replaces every Parameter by a sharded one: remember the plan's by name.
            names = {id(p): n for n, p in peft_model.named_parameters()}
            plan_names = [names.get(id(p)) for p in plan.parameters()]
            if None in plan_names:
                raise LorikitError("training plan: a trainable tensor is not a parameter of the model")
            if not plan_names:
                raise LorikitError("nothing to train: every parameter is frozen")
            return bundle, peft_model, plan, plan_names, *self.load_data(bundle.tokenizer)

        bundle, peft_model, plan, plan_names, examples, tokenized = dist.agree(set_up)
        causal_lm = peft_model.get_base_model()
        if cfg.grad_checkpointing:
            # Non-reentrant: works with frozen inputs (LoRI's frozen embeddings) and FSDP2.
            if hasattr(causal_lm, "activation_checkpointing_enable"):  # transformers ≥ 5 name
                causal_lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = dist.prepare(peft_model, self.loss_sum, cfg.bf16)
        model.train()
        current = dict(peft_model.named_parameters())
        params = [current[n] for n in plan_names]
        # One fused kernel for all tensors instead of a Python loop over them (hundreds of small
        # LoRA factors); FSDP2's sharded DTensors keep the default implementation.
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                      weight_decay=cfg.weight_decay, fused=not dist.sharded or None)
        self.peft_model, self.optimizer = peft_model, optimizer  # kept for inspection by callers/tests
        schedule = step_schedule(cfg, [len(t.input_ids) for t in tokenized])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, len(schedule)))
        trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
        ckpt = Checkpointer(cfg, dist, model, trainable, optimizer, scheduler)
        first_step = self.resume(ckpt, dist) if cfg.resume else 0
        pad_id = bundle.tokenizer.pad_token_id
        # FSDP's mixed-precision policy casts the gathered weights; a single process autocasts.
        autocast = cfg.bf16 and not dist.sharded
        t_start = time.perf_counter()
        reporter = self.reporter(dist.is_main)
        bar = tqdm(range(first_step, len(schedule)), initial=first_step, total=len(schedule),
                   desc=f"train {cfg.adapter.method}", unit="step", dynamic_ncols=True, disable=not dist.is_main,
                   smoothing=0.1)
        throughput = Throughput("ex/s" if cfg.head == "classification" else "tok/s")
        for step in bar:
            t0 = time.perf_counter()
            indices = schedule[step]
            micro = dist.micro_batches(indices, cfg.batch_size, cfg.grad_accum)
            # A rank with an empty share still runs the pass (FSDP's collectives must line up),
            # on a stand-in example whose loss is weighted 0.
            made = [(self.make_batch([tokenized[j] for j in (m or indices[:1])], pad_id), 1.0 if m else 0.0)
                    for m in micro]
            batches = [(batch, weight) for (batch, _), weight in made]
            n_tokens = int(dist.sum([float(sum(units for (_, units), w in made if w))])[0])
            local_loss = 0.0
            for batch, weight in batches:
                batch = {k: v.to(self.device) for k, v in batch.items()}
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss_sum = model(batch)
                (loss_sum * weight / max(1, n_tokens)).backward()
                local_loss += weight * float(loss_sum.detach())
            grad_norm = None
            if cfg.max_grad_norm:
                grad_norm = dist.clip_grad_norm(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            plan.after_step()
            loss = dist.sum([local_loss])[0] / max(1, n_tokens)
            if not math.isfinite(loss):
                raise dist.error(f"step {step + 1}: loss is {loss} (lower --lr or check the data)")
            record = {"step": step + 1, "loss": loss, "lr": scheduler.get_last_lr()[0],
                      ("examples" if cfg.head == "classification" else "tokens"): n_tokens,
                      "grad_norm": grad_norm, "seconds": time.perf_counter() - t0}
            self.log.append(record)
            reporter.log(record)
            bar.set_postfix(loss=f"{loss:.4f}", **throughput.update(step - first_step, n_tokens, record["seconds"]))
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < len(schedule):
                ckpt.save(step + 1, self.log)
        bar.close()
        reporter.close()
        if not dist.sharded:  # sharded: the gather in save() evaluates the plan's parametrizations
            plan.finalize()
        return self.save(bundle, peft_model, plan, len(examples), time.perf_counter() - t_start, dist)

    def reporter(self, is_main: bool) -> Reporter:
        """The --report-to trackers (rank 0 only)."""
        cfg = self.cfg
        summary = {"method": cfg.adapter.method, "seed": cfg.adapter.seed, "lr": cfg.lr, "rank": cfg.adapter.rank,
                   "data": cfg.data, "model": cfg.model}
        return Reporter(cfg.report_to if is_main else [], cfg.logging_dir or default_logging_dir(cfg.out),
                        Path(cfg.out).name, summary)

    def resume(self, ckpt: Checkpointer, dist) -> int:
        """Restore the newest complete checkpoint; returns the step to continue from."""
        latest = latest_checkpoint(ckpt.root)
        if latest is None:
            if dist.is_main:
                print(f"lorikit: --resume: no checkpoint in {ckpt.root}, starting at step 0", file=sys.stderr)
            return 0
        step, self.log = dist.agree(lambda: ckpt.load(latest))
        if dist.is_main:
            print(f"lorikit: resuming from {latest} (step {step})", file=sys.stderr)
        return step

    # ---- output ---------------------------------------------------------------------------
    def metadata(self, bundle, plan, n_rows: int, seconds: float) -> dict[str, Any]:
        cfg = self.cfg
        hyper = asdict(cfg)
        hyper.pop("adapter")
        for key in ("overwrite", "resume"):
            hyper.pop(key)
        return {
            "lorikit_version": __version__, "method": cfg.adapter.method, "seed": cfg.adapter.seed,
            "a_init": "osrm" if cfg.init == "osrm" else cfg.adapter.a_init if cfg.adapter.freezes_a else "peft-kaiming",
            "head": cfg.head, "num_labels": cfg.num_labels if cfg.head == "classification" else None,
            "init": getattr(self, "init_record", None) or {"kind": "default"}, "freeze": cfg.freeze,
            "base_model": bundle.base_model_id, "rank": cfg.adapter.rank, "alpha": cfg.adapter.alpha,
            "target_modules": list(cfg.adapter.target_modules),
            "data": {"source": cfg.data, "format": cfg.format, "rows": n_rows},
            "hyperparameters": hyper, "adapter_config": asdict(cfg.adapter),
            "train": {"steps": len(self.log), "final_loss": self.log[-1]["loss"] if self.log else None,
                      "seconds": round(seconds, 2), **plan.describe()},
            **plan.metadata(),
        }

    def save(self, bundle, peft_model, plan, n_rows: int, seconds: float, dist=None) -> Path:
        """Write the PEFT adapter (under torchrun: gathered in full, written by rank 0)."""
        cfg = self.cfg
        dist = dist or distributed.Single(self.device)
        meta = self.metadata(bundle, plan, n_rows, seconds)
        full_state = dist.full_adapter_state(peft_model)  # collective: every rank takes part

        def write():
            if not dist.is_main:
                return
            with atomic_output_dir(cfg.out, cfg.overwrite) as tmp:
                peft_model.save_pretrained(str(tmp), save_embedding_layers=False,
                                           **({"state_dict": full_state} if full_state is not None else {}))
                _sort_target_modules(tmp / "adapter_config.json")
                (tmp / "lorikit.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
                write_model_card(tmp, json.loads((tmp / "lorikit.json").read_text()))
                with open(tmp / "train_log.jsonl", "w") as fh:
                    for rec in self.log:
                        fh.write(json.dumps(rec) + "\n")

        dist.agree(write)
        return Path(cfg.out)


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


def _sort_target_modules(config_path: Path) -> None:
    """PEFT keeps target_modules as a set and writes it in hash order, which changes from one
    process to the next; sorted, the same run writes byte-identical files."""
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def train(cfg: TrainConfig) -> Path:
    """Train one adapter as ``cfg`` describes and return the output folder."""
    return Trainer(cfg).run()
