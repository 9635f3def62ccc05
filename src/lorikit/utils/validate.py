"""Numbers checked where they enter: command-line flags when parsed, config fields when built.

``finite_float`` / ``bounded_int`` are argparse ``type=`` functions (``--lr nan`` is refused by
the parser, before a model is loaded); ``check_number`` does the same for a config built in
Python or from a recipe. Every message names the flag or field.
"""

from __future__ import annotations

import argparse
import math

from ..errors import UsageError

SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy take a signed 64-bit seed at most


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """``name`` (a flag or field) holds a finite number within [low, high] (open ends as asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{name} {value!r}: must be a number")
    if not math.isfinite(value):
        raise UsageError(f"{name} {value}: must be a finite number")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below and low == 0 and low_open and high is None:
        raise UsageError(f"{name} {value}: must be positive")
    if below or above:
        lo = "" if low is None else f"{'>' if low_open else '≥'} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '≤'} {high:g}"
        raise UsageError(f"{name} {value}: must be {' and '.join(p for p in (lo, hi) if p)}")


def check_seed(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} {value!r}: must be an integer")
    if not 0 <= value <= SEED_MAX:
        raise UsageError(f"{name} {value}: must be between 0 and 2^63-1")


def finite_float(text: str) -> float:
    """argparse type: a finite float (``nan``, ``inf`` and overflowing literals are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def check_device(device: str, name: str = "--device") -> None:
    """auto, cpu, cuda or cuda:N naming a GPU this machine has (checked before any model is loaded)."""
    if device in ("auto", "cpu"):
        return
    import torch  # only a device name other than auto/cpu needs torch to check it

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"{name} {device}: CUDA is not available on this machine (use cpu or auto)")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UsageError(f"{name} {device}: no such GPU (this machine has {torch.cuda.device_count()}: "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        return
    try:
        torch.device(device)
    except RuntimeError:
        raise UsageError(f"{name} {device!r}: unknown device (use auto, cpu or cuda[:N])") from None
