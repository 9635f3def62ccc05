"""Crash-safe resume checkpoints: ``<out>.ckpt/step-NNNNNN/``, and intermediate adapters
``<out>/checkpoint-N/`` beside them.

``<out>/checkpoint-N/`` is what ``transformers.Trainer`` users expect: a stock PEFT adapter
(``adapter_config.json``, ``adapter_model.safetensors``, ``lorikit.json``, model card) that
``PeftModel.from_pretrained``, ``lorikit eval``, ``lorikit merge`` and ``lorikit push`` read. Until
the run ends ``<out>`` holds only these folders; the final adapter is then written around them.

A checkpoint holds everything the rest of the run depends on: the trainable tensors, the
optimizer and scheduler state, the RNG states (python ``random``, numpy, torch CPU and CUDA), the
step reached, the log so far and the settings it was made with. The batch order is a function
of (seed, epoch, step), so the step is the data position.

Each checkpoint is written into a temporary folder and renamed into place only when complete
(on one process: ``atomic_output_dir``; under torchrun: ``torch.distributed.checkpoint`` writes
the shards of every rank into the temporary folder and rank 0 renames it after a barrier).
A ``step-*`` folder therefore always is complete; a crash or a full disk while saving leaves the
previous ones untouched. Older checkpoints beyond ``--keep-checkpoints`` are deleted only after
the new one is in place.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import LorikitError, UsageError
from ..utils.atomic import MARKER, atomic_output_dir, mark_output_dir, remove_stale_leftovers, stale_leftovers
from .resume_settings import CheckpointMismatch, check_same_settings, settings  # noqa: F401 (importers' names)
from .rng import rng_state, set_rng_state

FORMAT = 1
STEP_DIR = re.compile(r"^step-(\d{6,})$")
EARLY_STOP_TENSORS = "early-stop-best.safetensors"


class NoUsableCheckpoint(LorikitError):
    """Every checkpoint of the run is incomplete or unreadable."""


ADAPTER_DIR = re.compile(r"^checkpoint-(\d+)$")


def adapter_checkpoints(out: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` adapter folders under ``out``, oldest first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in out.iterdir() if (m := ADAPTER_DIR.match(p.name)) and p.is_dir())
    return [p for _, p in found]


RUNS = "runs"  # TensorBoard's run folders, as transformers.Trainer: <out>/runs/<date>_<host>


def only_run_outputs(out: str | os.PathLike) -> bool:
    """``out`` holds what a run writes before its end (``checkpoint-N`` adapters, ``runs/``) and nothing
    else: the run has not ended, or ended without its final adapter."""
    out = Path(out)
    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    # a run killed while writing a checkpoint-N adapter leaves its temporary folder and lock file
    names -= {p.name for p in stale_leftovers(out, ADAPTER_DIR)}
    return bool(names) and all(ADAPTER_DIR.match(n) or n in (MARKER, RUNS) for n in names)


def clear_run_leftovers(out: str | os.PathLike) -> None:
    """Remove what a killed run left half-written in ``out`` (temporary ``checkpoint-N`` folders, their
    stale lock files); complete ``checkpoint-N`` folders and anything else stay."""
    remove_stale_leftovers(out, ADAPTER_DIR)


def open_run_output(out: str | os.PathLike) -> Path:
    """Create ``out`` for a run's intermediate outputs, marked as lorikit's (so a resumed run or
    --overwrite may replace it)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():
        mark_output_dir(out)
    return out


def write_adapter_checkpoint(out: str | os.PathLike, step: int, keep: int, write: Callable[[Path], None]) -> Path:
    """``out/checkpoint-<step>/`` written by ``write(folder)`` (atomically), then the oldest beyond ``keep``
    removed."""
    out = open_run_output(out)
    with atomic_output_dir(out / f"checkpoint-{step}", overwrite=True) as tmp:
        write(tmp)
    for old in adapter_checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return out / f"checkpoint-{step}"


def carry_run_outputs(out: str | os.PathLike, into: Path) -> None:
    """Copy the run's ``checkpoint-N`` folders and ``runs/`` into the final adapter's temporary folder
    (copies: if the final write fails, they stay where they were)."""
    runs = Path(out) / RUNS
    for folder in adapter_checkpoints(out) + ([runs] if runs.is_dir() else []):
        shutil.copytree(folder, into / folder.name)


def drop_adapter_checkpoints(out: str | os.PathLike) -> None:
    """A fresh run with --overwrite: an earlier run's intermediate adapters must not mix with its own."""
    for folder in adapter_checkpoints(out):
        shutil.rmtree(folder, ignore_errors=True)
    if Path(out).is_dir() and {p.name for p in Path(out).iterdir()} == {MARKER}:
        shutil.rmtree(out, ignore_errors=True)


def checkpoint_root(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.ckpt"


def checkpoints(root: Path) -> list[Path]:
    """The ``step-*`` folders under ``root``, newest first."""
    if not root.is_dir():
        return []
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())
    return [p for _, p in reversed(steps)]


def resume_state_for(path: str | os.PathLike) -> Path:
    """The resume state of a checkpoint the user names (``--resume-from``, Hugging Face's
    ``--resume_from_checkpoint PATH``): ``<out>/checkpoint-N`` (the adapter folder ``transformers.Trainer``
    users know; its state is ``<out>.ckpt/step-N``) or a ``<out>.ckpt/step-N`` folder itself."""
    path = Path(path)
    if (m := ADAPTER_DIR.match(path.name)):
        state = checkpoint_root(path.parent) / f"step-{int(m.group(1)):06d}"
    elif STEP_DIR.match(path.name):
        state = path
    else:
        raise UsageError(f"--resume-from {path}: not a checkpoint folder (expected <out>/checkpoint-N, as "
                         f"--save-every writes, or <out>.ckpt/step-N)")
    if not (state / "state.json").is_file():
        have = ", ".join(p.name for p in reversed(checkpoints(state.parent))) or "none"
        raise UsageError(f"--resume-from {path}: its resume state {state} is missing (resume states in "
                         f"{state.parent}: {have})")
    return state


def latest_checkpoint(root: Path) -> Path | None:
    found = checkpoints(root)
    return found[0] if found else None


def resume_step(out: str | os.PathLike) -> int | None:
    """The step of the newest resume state of the run writing ``out``, if it has a readable one."""
    found = checkpoints(checkpoint_root(Path(out)))
    try:
        return int(json.loads((found[0] / "state.json").read_text())["step"]) if found else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def claim_checkpoint_dir(cfg, dist) -> None:
    """A fresh run must not mix its checkpoints with an earlier run's (pruning keeps the highest
    steps, --resume takes the highest): refuse them, or discard them with --overwrite."""
    root = checkpoint_root(cfg.out)
    if cfg.resuming and dist.is_main:  # called holding --out's lock: no other run writes there
        clear_run_leftovers(cfg.out)
    if cfg.resuming or (latest_checkpoint(root) is None and not adapter_checkpoints(cfg.out)):
        return

    def check():
        if not cfg.overwrite:
            raise UsageError(f"{root}: holds checkpoints of an earlier run (pass --resume to continue it, "
                             f"or --overwrite to discard them)")

    dist.agree(check)
    if dist.is_main:
        shutil.rmtree(root, ignore_errors=True)
        drop_adapter_checkpoints(cfg.out)
    dist.barrier()


def load_tensors(path: Path, map_location: str | None = "cpu") -> Any:
    """A ``.pt`` file of a checkpoint, read as data only: tensors, numbers, strings, lists, dicts.

    A checkpoint lorikit wrote holds nothing else; anything else (a class, a function: what a
    planted pickle needs to run code) is refused, not executed, and names the file."""
    try:
        with warnings.catch_warnings():  # torch warns about a pickle protocol before refusing it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():  # junk bytes: an incomplete checkpoint, not a refusal
            raise ValueError(f"{path.name}: {exc}") from exc
        raise UsageError(f"{path}: refused: holds Python objects other than tensors and plain values (lorikit "
                         f"writes none: it was altered, is not lorikit's, or predates RNG states saved as tensors)"
                         ) from exc


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _prune(root: Path, keep: int) -> None:
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())
    for _, path in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def _remove_stale_temp(root: Path) -> None:
    """Temporary folders left by a run killed while saving (never a complete checkpoint)."""
    if root.is_dir():
        for path in root.glob(".step-*.tmp*"):
            shutil.rmtree(path, ignore_errors=True)


def _save_error(root: Path, exc: OSError) -> LorikitError:
    return LorikitError(f"{root}: cannot write checkpoint: {exc.strerror or exc} "
                        f"(the previous checkpoint is intact; fix this and rerun with --resume)")


class Checkpointer:
    """Saves and restores resume state; ``dist`` is the trainer's ``Single``/``Distributed``."""

    def __init__(self, cfg, dist, model: torch.nn.Module, params_by_name: dict[str, torch.nn.Parameter],
                 optimizer, scheduler, adapter=None):
        self.cfg, self.dist, self.adapter = cfg, dist, adapter
        self.root = checkpoint_root(cfg.out)
        self.model, self.params = model, params_by_name
        self.optimizer, self.scheduler = optimizer, scheduler
        self.write_adapter: Callable[[int], None] | None = None  # writes <out>/checkpoint-N (every rank calls it)
        self.early_stop = None  # the run's EarlyStopping: its dev-loss record and best tensors are resume state too

    def _state(self, step: int, log: list[dict]) -> dict[str, Any]:
        state = {"format": FORMAT, "step": step, "world_size": self.dist.world,
                 "settings": settings(self.cfg, self.adapter), "log": log}
        if self.early_stop is not None:
            state["early_stopping"] = self.early_stop.state()
        return state

    # ---- save -----------------------------------------------------------------------------
    def save(self, step: int, log: list[dict]) -> Path:
        final = self.root / f"step-{step:06d}"
        if self.dist.sharded:
            self._save_sharded(final, step, log)
        else:
            self._save_local(final, step, log)
        if self.write_adapter is not None:  # after the resume state: a checkpoint-N adapter always has one
            self.write_adapter(step)
        return final

    def _save_local(self, final: Path, step: int, log: list[dict]) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _remove_stale_temp(self.root)
            with atomic_output_dir(final, overwrite=True) as tmp:
                tensors = {n: p.detach().cpu().contiguous() for n, p in self.params.items()}
                _write(tmp / "trainable.safetensors", save(tensors))
                _write(tmp / "optimizer.pt", _torch_bytes(self.optimizer.state_dict()))
                _write(tmp / "scheduler.pt", _torch_bytes(self.scheduler.state_dict()))
                _write(tmp / "rng-rank0.pt", _torch_bytes(rng_state()))
                if self.early_stop is not None and (best := self.early_stop.best_tensors()):
                    _write(tmp / EARLY_STOP_TENSORS, save(best))
                _write(tmp / "state.json", (json.dumps(self._state(step, log), indent=1) + "\n").encode())
            _prune(self.root, self.cfg.keep_checkpoints)
        except OSError as exc:
            raise _save_error(self.root, exc) from exc
        except LorikitError as exc:  # the atomic writer's one-line form of a failed write
            if isinstance(exc.__cause__, OSError):
                raise _save_error(self.root, exc.__cause__) from exc
            raise

    def _save_sharded(self, final: Path, step: int, log: list[dict]) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        tmp = self.root / f".step-{step:06d}.tmp"

        def make_tmp():
            if self.dist.is_main:
                self.root.mkdir(parents=True, exist_ok=True)
                _remove_stale_temp(self.root)
                tmp.mkdir()

        def write_shards():
            model_sd, optim_sd = get_state_dict(self.model, self.optimizer,
                                                options=StateDictOptions(ignore_frozen_params=True))
            try:
                dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(tmp))
            except Exception as exc:  # DCP wraps every rank's failure in CheckpointException
                raise LorikitError(f"{self.root}: cannot write checkpoint: {exc}".splitlines()[0]) from exc
            _write(tmp / f"rng-rank{self.dist.rank}.pt", _torch_bytes(rng_state()))

        def publish():
            if self.dist.is_main:
                _write(tmp / "scheduler.pt", _torch_bytes(self.scheduler.state_dict()))
                _write(tmp / "state.json", (json.dumps(self._state(step, log), indent=1) + "\n").encode())
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                _prune(self.root, self.cfg.keep_checkpoints)

        try:
            for phase in (make_tmp, write_shards, publish):
                self.dist.agree(phase)  # each phase completes on every rank before the next starts
        except LorikitError:
            if self.dist.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ---- load -----------------------------------------------------------------------------
    def load(self, ckpt: Path) -> tuple[int, list[dict]]:
        """Restore everything from ``ckpt``; returns (steps done, log so far)."""
        try:
            saved = json.loads((ckpt / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise LorikitError(f"{ckpt}/state.json: unreadable checkpoint state ({exc})") from exc
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            got = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
            raise LorikitError(f"{ckpt}: checkpoint format {got} is not {FORMAT}")
        check_same_settings(saved, self.cfg, self.dist.world, ckpt, self.adapter)
        try:
            if self.dist.sharded:
                self._load_sharded(ckpt)
            else:
                self._load_local(ckpt)
            self.scheduler.load_state_dict(load_tensors(ckpt / "scheduler.pt"))
            set_rng_state(load_tensors(ckpt / f"rng-rank{self.dist.rank}.pt"))
            if self.early_stop is not None:  # a KeyError (no dev-loss record) reads as an unusable checkpoint
                best = ckpt / EARLY_STOP_TENSORS
                self.early_stop.load_state(saved["early_stopping"], load_file(str(best)) if best.is_file() else {})
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, EOFError,
                SafetensorError) as exc:
            raise LorikitError(f"{ckpt}: cannot restore checkpoint: {' '.join(str(exc).split())[:300]}") from exc
        return int(saved["step"]), list(saved["log"])

    def _load_local(self, ckpt: Path) -> None:
        tensors = load_file(str(ckpt / "trainable.safetensors"))
        missing = sorted(set(self.params) - set(tensors))
        if missing:
            raise LorikitError(f"{ckpt}: trainable tensor {missing[0]} missing from the checkpoint")
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(tensors[name].to(p.device, p.dtype))
        self.optimizer.load_state_dict(load_tensors(ckpt / "optimizer.pt"))

    def _load_sharded(self, ckpt: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

        from .safe_dcp import SafePlanner, SafeReader

        options = StateDictOptions(ignore_frozen_params=True)
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer, options=options)
        state = {"model": model_sd, "optimizer": optim_sd}
        try:
            dcp.load(state, storage_reader=SafeReader(str(ckpt)), planner=SafePlanner(ckpt))
        except dcp.api.CheckpointException as exc:  # DCP gathers every rank's failure into one
            causes = [e for e, _ in exc.failures.values()]
            raise next((e for e in causes if isinstance(e, UsageError)),
                       LorikitError(f"{ckpt}: {causes[0] if causes else exc}".splitlines()[0])) from exc
        # Not strict: the frozen weights are left out on purpose (dcp.load already failed if a
        # trainable tensor was missing from the checkpoint).
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"],
                       options=StateDictOptions(ignore_frozen_params=True, strict=False))
