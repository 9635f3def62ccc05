"""Data-parallel training with FSDP2 under ``torchrun``.

One process per device. Every rank builds the same model (same seed, same adapter), then
``fully_shard`` shards each decoder layer and the root, so every parameter — frozen base
weights, frozen LoRI A, trained B — lives 1/world on each rank. The optimizer holds only the
plan's trainable parameters (their local shards).

Data: step ``t`` uses the same global batch of indices as a single process
(``step_schedule``). Rank ``r`` takes ``indices[r::world]`` and splits it into ``grad_accum``
micro-batches, so every rank runs the same number of forward/backward passes (FSDP's
collectives must line up; a rank whose slice is empty runs a weight-0 pass). The loss of rank
``r`` is Σ_{its tokens} CE / N with N the supervised-token count all-reduced over ranks, and
FSDP sums (does not average) the gradients, so the update equals the single-process one:

    ∇ (Σ_r Σ_{i ∈ r} CE_i) / N  =  ∇ Σ_i CE_i / N.

Errors raised on some ranks only (a missing file, a bad mask) are agreed on with one
``all_gather_object`` before any collective that could hang, so every rank exits non-zero and
rank 0 prints the one line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import LorikitError, UsageError
from ..models.device import resolve_device

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    return all(v in os.environ for v in TORCHRUN_VARS)


class AgreedError(LorikitError):
    """An error every rank raises together; only rank 0 prints it (``rank0_only``)."""

    rank0_only = True

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


class LossModule(torch.nn.Module):
    """The base model with the training loss as its forward, so FSDP's root hooks run on every
    step (the supervised-logits SFT path calls the decoder and the head separately)."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


@dataclass
class Single:
    """The single-process path: plain module on one device, nothing to reduce."""

    device: torch.device
    rank: int = 0
    world: int = 1
    sharded: bool = False

    @property
    def is_main(self) -> bool:
        return True

    def agree(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def error(self, message: str) -> LorikitError:
        """An error every rank reaches by itself (it depends on all-reduced values only)."""
        return LorikitError(message)

    def barrier(self) -> None:
        pass

    def sum(self, values: list[float]) -> list[float]:
        return values

    def micro_batches(self, indices: list[int], batch_size: int, grad_accum: int) -> list[list[int]]:
        return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]

    def prepare(self, peft_model, loss_fn: LossFn, bf16: bool) -> torch.nn.Module:
        peft_model.to(self.device)
        return LossModule(peft_model.get_base_model(), loss_fn)

    def clip_grad_norm(self, params, max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def full_adapter_state(self, peft_model) -> dict[str, torch.Tensor] | None:
        return None  # save_pretrained reads the module itself

    def snapshot_adapter_state(self, peft_model) -> dict[str, torch.Tensor] | None:
        """The adapter as it stands mid-run (a sparse plan's parametrizations evaluated), for an
        intermediate ``checkpoint-N`` adapter; rank 0 only."""
        return {k: v.cpu() for k, v in evaluated_adapter_state(peft_model).items()}

    def close(self) -> None:
        pass


def evaluated_adapter_state(peft_model, full: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.detach,
                            ) -> dict[str, torch.Tensor]:
    """Every adapter tensor keyed as ``peft_model.state_dict()`` without parametrizations: a
    parametrized tensor (LoRI-S: B = scatter(B₀, indices, values)) is evaluated, which is what
    ``plan.finalize()`` bakes in. ``full`` gathers a sharded tensor; every rank walks the modules in
    the same order, so the gathers line up."""
    from torch.nn.utils import parametrize

    state: dict[str, torch.Tensor] = {}
    for name, module in peft_model.named_modules():
        # LoRA tensors and PEFT's modules_to_save copies (a classification head)
        if not any(k in name for k in ("lora_", "modules_to_save")) or ".parametrizations" in name:
            continue
        tensors = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
        for key, t in tensors.items():
            state[f"{name}.{key}"] = full(t)
        if parametrize.is_parametrized(module):
            for key, chain in module.parametrizations.items():
                value = full(chain.original)
                for fn in chain:
                    inner = {n: full(t) for n, t in [*fn.named_parameters(), *fn.named_buffers()]}
                    value = torch.func.functional_call(fn, inner, (value,))
                state[f"{name}.{key}"] = value.detach()
    return state


class Distributed(Single):
    """The torchrun path: gloo on CPU, nccl on CUDA, FSDP2 sharding."""

    def __init__(self, device: torch.device, rank: int, world: int):
        super().__init__(device=device, rank=rank, world=world, sharded=True)
        self.mesh = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- collectives ------------------------------------------------------------------------
    def agree(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on every rank; if it failed on any, raise that error on all of them."""
        import torch.distributed as dist

        result, failure = None, None
        try:
            result = fn()
        except LorikitError as exc:
            failure = (str(exc), exc.exit_code)
        except OSError as exc:
            failure = (f"{exc.filename or 'I/O'}: {exc.strerror or exc}", 1)
        failures: list[Any] = [None] * self.world
        dist.all_gather_object(failures, failure)
        for rank, fail in enumerate(failures):
            if fail is not None:
                message, code = fail
                where = "" if rank == 0 or failures[0] is not None else f"rank {rank}: "
                raise AgreedError(where + message, code)
        return result

    def error(self, message: str) -> LorikitError:
        return AgreedError(message, LorikitError.exit_code)

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def micro_batches(self, indices: list[int], batch_size: int, grad_accum: int) -> list[list[int]]:
        share = indices[self.rank::self.world]
        per = max(1, math.ceil(len(share) / grad_accum))
        return [share[i * per:(i + 1) * per] for i in range(grad_accum)]  # may hold empty lists

    # ---- model ------------------------------------------------------------------------------
    def prepare(self, peft_model, loss_fn: LossFn, bf16: bool) -> torch.nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        self.mesh = init_device_mesh(self.device.type, (self.world,))
        causal_lm = peft_model.get_base_model()
        peft_model.to(self.device)
        # bf16 all-gathered weights for compute; the sharded parameters (and so the optimizer
        # state) stay fp32, and gradients are reduced in fp32.
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        layers = decoder_layers(causal_lm)
        for layer in layers:
            fully_shard(layer, mesh=self.mesh, mp_policy=mp)
        root = LossModule(causal_lm, loss_fn)
        fully_shard(root, mesh=self.mesh, mp_policy=mp)
        # Each rank's loss is already divided by the global token count: sum, do not average
        # (plain SUM collectives: gloo has no pre-scaled sum).
        for module in [*layers, root]:
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
        return root

    def clip_grad_norm(self, params, max_norm: float) -> float:
        from torch.distributed.tensor import DTensor

        grads = [p.grad for p in params if p.grad is not None]
        total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        if isinstance(total, DTensor):
            total = total.full_tensor()
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
        return float(total)

    def full_adapter_state(self, peft_model) -> dict[str, torch.Tensor] | None:
        """Every adapter tensor gathered in full (``evaluated_adapter_state``), on rank 0 only."""
        from torch.distributed.tensor import DTensor

        def full(t: torch.Tensor) -> torch.Tensor:
            return (t.full_tensor() if isinstance(t, DTensor) else t).detach()

        state = evaluated_adapter_state(peft_model, full)
        if not self.is_main:
            return None
        return {k: v.cpu() for k, v in state.items()}

    snapshot_adapter_state = full_adapter_state  # collective: every rank takes part

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def decoder_layers(causal_lm: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks (``model.layers`` for Llama-like models)."""
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else None
    for owner in (decoder, causal_lm):
        layers = getattr(owner, "layers", None) or getattr(owner, "h", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return list(layers)
    raise LorikitError(f"{type(causal_lm).__name__}: no decoder layer list found to shard")


def setup(device: str, global_batch: int) -> Single:
    """``Distributed`` under torchrun (process group initialised), else ``Single``."""
    if not launched_by_torchrun():
        return Single(resolve_device(device))
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    # Checked before the process group exists: every rank raises the same error, none waits.
    if global_batch % world:
        raise AgreedError(f"--batch-size × --grad-accum = {global_batch} is not divisible by the world size "
                          f"{world} (every rank takes an equal share of each global batch)", UsageError.exit_code)
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AgreedError(f"--device {device}: CUDA is not available on this machine", UsageError.exit_code)
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Distributed(dev, rank, world)
