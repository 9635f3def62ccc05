"""Which torch device a ``--device`` value names, and which dtype ``--dtype auto`` picks there."""

from __future__ import annotations

import functools
import logging
import os
import platform
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:  # torch loads where used: TrainConfig reads DTYPES for --help
    import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")
# Set to 0 or 1 to override the CPU's bfloat16 detection (what `--dtype auto` picks on the CPU).
CPU_BF16_ENV = "LORIKIT_CPU_BF16"
logger = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:N]``; one-line error otherwise."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"--device {device!r}: unknown device") from exc


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # x86 / aarch64
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16),
    where oneDNN's bf16 GEMMs run several times faster than float32 ones; without it torch emulates bf16,
    many times slower, and lorikit computes a bf16 base model's Linears in float32 (``cpu_bf16``).
    ``LORIKIT_CPU_BF16=0`` / ``1`` overrides the detection."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    flags = _cpu_flags()
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "bf16" in flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def resolve_dtype(dtype: str, device: str, option: str = "--dtype") -> str:
    """``--dtype``: ``auto`` is bfloat16 on a CPU that computes it natively (``cpu_has_bf16``),
    float32 elsewhere (GPUs included, as before); any other value is kept."""
    if dtype not in DTYPES:
        raise UsageError(f"{option} {dtype!r}: unknown (choose from {', '.join(DTYPES)})")
    import torch

    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if dtype != "auto":
        if dtype == "bfloat16" and on_cpu and not cpu_has_bf16():
            _warn_emulated_bf16(option)
        return dtype
    return "bfloat16" if on_cpu and cpu_has_bf16() else "float32"


@functools.lru_cache(maxsize=1)  # once per process: a study validates hundreds of stages
def _warn_emulated_bf16(option: str) -> None:
    logger.warning("%s bfloat16 on a CPU without native bfloat16 (no AVX512-BF16, AMX or Arm BF16): torch emulates "
                   "it, many times slower than float32, so each Linear of the base model is computed as a float32 "
                   "GEMM of its bf16 operands, rounded to bf16 (the same arithmetic; a step takes ~1.2x its float32 "
                   "time); --dtype auto picks float32 here", option)
