"""Finite numbers only: no NaN/inf tensor is ever written or used as a result.

A diverged training step, a merge weight of 1e39 or ``"lora_alpha": NaN`` all end in an adapter
whose every output is NaN; PEFT loads such a file without complaint and an evaluation scores it
0.0. These checks turn each into a one-line error naming the file and tensor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from safetensors import SafetensorError, safe_open

from ..errors import LorikitError

if TYPE_CHECKING:
    import torch


def nonfinite_key(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The first key whose (floating-point) tensor holds NaN or ±inf, else None."""
    import torch  # a caller holding tensors has loaded it; the atomic writers import this module without

    for key, tensor in tensors.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return key
    return None


def check_tensors_finite(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    key = nonfinite_key(tensors)
    if key is not None:
        raise LorikitError(f"{source}: tensor {key} holds NaN or inf values (a diverged training?)")


def check_saved_tensors_finite(folder: str | os.PathLike, out: str | os.PathLike) -> None:
    """Every tensor of every ``*.safetensors`` file under ``folder`` is finite, or nothing is written."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    if nonfinite_key({key: fh.get_tensor(key)}) is not None:
                        rel = path.relative_to(folder)
                        raise LorikitError(f"--out {out}: not written: {rel} tensor {key} has non-finite "
                                           f"values (NaN or inf); the inputs or settings overflow")
        except SafetensorError as exc:
            raise LorikitError(f"--out {out}: not written: {path.name} is not a readable safetensors "
                               f"file ({exc})") from exc
