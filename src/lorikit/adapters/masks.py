"""LoRI sparsity masks over B, extracted from a trained LoRI-D adapter (docs/methods.md#masks).

Global scope (the reference): with N = the number of entries of all B matrices together,
``k = int((1 − sparsity) · N)``, ``threshold`` = the k-th largest |B| over all modules, and
``mask = |B| ≥ threshold``. Ties at the threshold can keep a few more than k entries, so the
exact kept count is always reported. Module scope does the same top-k inside each B separately
(``k_m = int((1 − sparsity) · N_m)``).

File format (the reference's, so published masks work): ``<adapter>/masks/{sparsity}_mask.pt``,
a ``torch.save``d dict from the full PEFT parameter name *with* the adapter segment, e.g.
``base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight``, to a bool tensor of
B's shape ``[out, r]``; True = kept (trainable). Reading also accepts names without ``.default``.
"""

from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LorikitError, UsageError
from ..utils.atomic import atomic_write_bytes
from .sparsity import check_sparsity, kept_count, mask_filename
from .state import AdapterState, load_adapter, lora_key, module_name_from_key

SCOPES = ("global", "module")
MASK_DIR = "masks"
_LAYER = re.compile(r"\.layers\.(\d+)\.")

Masks = dict[str, torch.Tensor]  # module path -> bool [out, r], True = kept


def _topk_mask(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0:
        return torch.zeros_like(magnitudes, dtype=torch.bool)
    threshold = torch.topk(magnitudes.flatten(), k, sorted=False).values.min()
    return magnitudes >= threshold


@dataclass
class MaskResult:
    """One extracted mask and its exact density, globally, per layer and per module."""

    sparsity: float
    scope: str
    masks: Masks
    target_kept: int  # k of the rounding rule
    kept: int = 0
    total: int = 0
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    per_module: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self):
        self.kept = sum(int(m.sum()) for m in self.masks.values())
        self.total = sum(m.numel() for m in self.masks.values())
        layers: dict[str, list[int]] = {}
        for name, m in self.masks.items():
            kept, total = int(m.sum()), m.numel()
            self.per_module[name] = {"kept": kept, "total": total, "kept_fraction": kept / total}
            found = _LAYER.search(f".{name}.")
            layer = found.group(1) if found else "other"
            acc = layers.setdefault(layer, [0, 0])
            acc[0] += kept
            acc[1] += total
        self.per_layer = {k: {"kept": v[0], "total": v[1], "kept_fraction": v[0] / v[1]} for k, v in layers.items()}

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.total if self.total else 0.0

    def summary(self) -> dict:
        return {"sparsity": self.sparsity, "scope": self.scope, "target_kept": self.target_kept,
                "kept": self.kept, "total": self.total, "kept_fraction": self.kept_fraction,
                "per_layer": self.per_layer}


def extract_masks(adapter: AdapterState | str | os.PathLike, sparsities: float | list[float],
                  scope: str = "global") -> list[MaskResult]:
    """Masks of B for each sparsity (fraction of entries zeroed), largest |B| kept."""
    state = adapter if isinstance(adapter, AdapterState) else load_adapter(adapter)
    if scope not in SCOPES:
        raise UsageError(f"--scope {scope!r}: unknown (choose from {', '.join(SCOPES)})")
    values = [sparsities] if isinstance(sparsities, (int, float)) else list(sparsities)
    if not values:
        raise UsageError("--sparsity: give at least one value")
    values = [check_sparsity(s) for s in values]
    magnitudes = {name: m.B.detach().float().abs() for name, m in state.modules().items()}
    for name, t in magnitudes.items():  # NaN compares false with every threshold: the top-k would be wrong
        if not torch.isfinite(t).all():
            raise LorikitError(f"{state.source}: lora_B of {name} holds NaN or inf values (a diverged training?); "
                               "cannot rank its entries")
    total = sum(t.numel() for t in magnitudes.values())
    if all(not bool(t.any()) for t in magnitudes.values()):  # every |B| ties at 0: a "mask" would keep all
        raise UsageError(f"{state.source}: every lora_B entry is zero (an untrained adapter?): there are no "
                         "magnitudes to rank; extract masks after training")
    results = []
    for s in values:
        if scope == "global":
            k = kept_count(s, total)
            if k == 0:
                raise UsageError(f"--sparsity {s}: keeps no entry of this adapter's {total} B entries")
            flat = torch.cat([t.flatten() for t in magnitudes.values()])
            threshold = torch.topk(flat, k, sorted=False).values.min()
            masks = {name: t >= threshold for name, t in magnitudes.items()}
        else:
            k = sum(kept_count(s, t.numel()) for t in magnitudes.values())
            masks = {name: _topk_mask(t, kept_count(s, t.numel())) for name, t in magnitudes.items()}
        results.append(MaskResult(sparsity=s, scope=scope, masks=masks, target_kept=k))
    return results


# ---- file format ---------------------------------------------------------------------------
def mask_to_reference(masks: Masks, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """Masks keyed by the full PEFT parameter name (with ``.default``), as the reference saves them."""
    return {lora_key(name, "B", adapter_name): m.to(torch.bool).contiguous() for name, m in masks.items()}


def save_mask(masks: Masks, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``torch.save`` in the reference format, written atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: exists (pass --overwrite to replace it)")
    buffer = io.BytesIO()
    torch.save(mask_to_reference(masks), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """Why torch.load failed, in words: its own messages are paragraphs or bare errno strings."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one has no directory
        return "truncated or not a torch.save file"
    text = str(exc)
    if "Weights only load failed" in text:
        return "holds Python objects other than tensors; only tensor dicts are loaded"
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]


def load_mask(path: str | os.PathLike, adapter: AdapterState | None = None, flag: str = "--mask") -> Masks:
    """Read a reference-format mask file; with ``adapter`` check keys and shapes against its B's.

    Keys may carry the adapter segment (``lora_B.default.weight``) or not (``lora_B.weight``).
    Values must be bool, or 0/1 numbers. Returns {module path: bool [out, r]}. ``flag`` names the
    option the path came from in the error for a missing file.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing on junk
            warnings.simplefilter("ignore", UserWarning)
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of every kind: report one line
        raise LorikitError(f"{path}: not a readable mask file ({_unreadable_reason(path, exc)})") from exc
    if not isinstance(raw, dict) or not raw:
        raise LorikitError(f"{path}: a mask file holds a non-empty dict of parameter name -> bool tensor")
    masks: Masks = {}
    for key, value in raw.items():
        parsed = module_name_from_key(str(key))
        if parsed is None or parsed[1] != "B":
            raise LorikitError(f"{path}: key {key!r} is not a lora_B weight name")
        if not isinstance(value, torch.Tensor) or value.dim() != 2:
            raise LorikitError(f"{path}: key {key!r}: expected a 2-D bool tensor [out, r]")
        if value.dtype != torch.bool:
            if value.is_floating_point() or value.is_complex() or not bool(((value == 0) | (value == 1)).all()):
                raise LorikitError(f"{path}: key {key!r}: mask values must be bool (or 0/1), got {value.dtype}")
            value = value != 0
        if parsed[0] in masks:
            raise LorikitError(f"{path}: key {key!r}: module {parsed[0]} appears twice")
        masks[parsed[0]] = value
    if not any(bool(m.any()) for m in masks.values()):
        raise LorikitError(f"{path}: the mask keeps no entry (every value is False): nothing would be trained")
    if adapter is not None:
        check_mask_matches(masks, adapter, path)
    return masks


def check_mask_matches(masks: Masks, adapter: AdapterState | dict[str, tuple[int, int]], source="mask") -> None:
    """Error naming the first key whose module is missing or whose shape differs from B's."""
    if isinstance(adapter, AdapterState):
        shapes = {name: tuple(m.B.shape) for name, m in adapter.modules().items()}
        where = adapter.source
    else:
        shapes, where = adapter, "the adapter"
    for name, m in masks.items():
        if name not in shapes:
            raise LorikitError(f"{source}: key {lora_key(name, 'B', 'default')!r} has no module in {where}")
        if tuple(m.shape) != shapes[name]:
            raise LorikitError(f"{source}: key {lora_key(name, 'B', 'default')!r}: shape {tuple(m.shape)} "
                               f"does not match lora_B {shapes[name]} of {where}")
    for name in shapes:
        if name not in masks:
            raise LorikitError(f"{source}: no entry for key {lora_key(name, 'B', 'default')!r} of {where}")


def adapter_of_mask(mask_path: str | os.PathLike) -> Path | None:
    """The adapter folder a mask was extracted from: the parent of its ``masks/`` folder, if any."""
    p = Path(mask_path).resolve()
    folder = p.parent.parent
    if p.parent.name == MASK_DIR and (folder / "adapter_config.json").is_file():
        return folder
    return None


def write_masks(adapter: str | os.PathLike, sparsities: list[float], scope: str = "global",
                out_dir: str | os.PathLike | None = None, overwrite: bool = False) -> list[tuple[Path, MaskResult]]:
    """Extract and save one file per sparsity into ``<adapter>/masks/`` (or ``out_dir``)."""
    state = load_adapter(adapter)
    results = extract_masks(state, sparsities, scope)
    folder = Path(out_dir) if out_dir else Path(adapter) / MASK_DIR
    paths = [folder / mask_filename(r.sparsity) for r in results]
    for p in paths:  # refuse before writing anything
        if p.exists() and not overwrite:
            raise UsageError(f"{p}: exists (pass --overwrite to replace it)")
    return [(save_mask(r.masks, p, overwrite=True), r) for p, r in zip(paths, results)]


def bitwise_nonzero(t: torch.Tensor) -> torch.Tensor:
    """Entries whose bits are not all zero (so −0.0 counts as stored, as it must for exact copies)."""
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(ints) != 0


def parent_overlap(parent: AdapterState, masks: Masks) -> dict:
    """How many of the parent's non-zero B entries the new mask would retrain (continual learning)."""
    parent_nz = both = kept = 0
    for name, m in parent.modules().items():
        nz = bitwise_nonzero(m.B)
        parent_nz += int(nz.sum())
        kept += int(masks[name].sum())
        both += int((nz & masks[name]).sum())
    return {"parent_nonzero": parent_nz, "mask_kept": kept, "both": both,
            "fraction_of_mask": both / kept if kept else 0.0,
            "fraction_of_parent": both / parent_nz if parent_nz else 0.0}
