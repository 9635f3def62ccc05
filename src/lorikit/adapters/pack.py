"""Compact single-file form of an adapter (``.lori``) that expands back to the identical PEFT adapter.

A LoRI-S adapter stores B densely with ~90% zeros and A, which is a function of (seed, module).
The packed file keeps only what cannot be regenerated:

- B: the values of the entries whose bits are non-zero (row-major, all modules in one vector per
  dtype), plus one bit per entry saying which — all modules' bits in one stream, ``np.packbits`` then LZMA-compressed (a 10%-dense mask
  costs ~4.9 bits per kept entry, close to its entropy, instead of 8 for raw bits or 32 for
  int32 indices). Testing the bit pattern rather than ``!= 0`` keeps −0.0 exact.
- A: nothing when ``seeded_projection(seed, module, ...)`` reproduces it bit for bit (checked per
  module); otherwise A itself (LoRA, OSRM, adapters without ``lorikit.json``).
- every other tensor as is; ``adapter_config.json`` and ``lorikit.json`` as their exact bytes.

Container: one safetensors file (tensors + string metadata), written atomically. ``unpack``
writes ``adapter_config.json``, ``adapter_model.safetensors`` (same keys, order, dtypes, values and
header metadata) and ``lorikit.json``; an adapter with ``rank_pattern`` / ``alpha_pattern`` comes
back in the portable form (one rank, one scale, the same ΔW) unless ``rank_pattern="keep"``.
"""

from __future__ import annotations

import json
import lzma
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import LorikitError, UsageError
from ..utils.atomic import atomic_output_dir, atomic_write_bytes
from ..utils.outputs import guard_output
from .methods import regenerable_a
from .patterns import pattern_value
from .seeded import seeded_projection
from . import checks, pack_checks
from .seeded import A_INITS, seeded_projection
from .state import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, LORIKIT_META, AdapterState, load_adapter,
                    module_name_from_key, resolve_adapter_path, validate)

PACK_FORMAT = "lorikit-pack"
PACK_VERSION = "1"
_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}


def _bits(t: torch.Tensor) -> torch.Tensor:
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(ints)


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def _raw(t: torch.Tensor) -> bytes:
    return t.numpy().tobytes()


def _seed_of(state: AdapterState) -> tuple[int | None, str | None]:
    return regenerable_a(state.meta) or (None, None)


@dataclass
class PackReport:
    path: Path
    packed_bytes: int
    peft_bytes: int  # size of the adapter's weight file
    kept: int  # stored B values
    b_entries: int
    a_regenerated: int  # modules whose A comes from the seed
    modules: int

    @property
    def ratio(self) -> float:
        return self.packed_bytes / self.peft_bytes if self.peft_bytes else 0.0


def _pack_metadata(folder: Path, st_meta: dict, seed: int | None, a_init: str | None,
                   stored: dict[str, torch.Tensor]) -> dict[str, str]:
    """The .lori header: format, the PEFT config and metadata, the seed that regenerates A, a checksum."""
    metadata = {
        "format": PACK_FORMAT, "version": PACK_VERSION,
        "adapter_config": (folder / ADAPTER_CONFIG).read_text(),
        "safetensors_metadata": json.dumps(st_meta),
        "seed": "" if seed is None else str(seed), "a_init": a_init or "",
    }
    if (folder / LORIKIT_META).is_file():
        metadata["lorikit_json"] = (folder / LORIKIT_META).read_text()
    metadata[pack_checks.CHECKSUM_KEY] = pack_checks.digest(stored, metadata)
    return metadata


def pack_adapter(adapter: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> PackReport:
    """Write ``adapter`` (a PEFT LoRA folder) as one compact ``.lori`` file."""
    folder = resolve_adapter_path(adapter)
    guard_output(out, [adapter])
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out}: exists (pass --overwrite to replace it)")
    if out.exists() and out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a file name such as adapter.lori")
    state = load_adapter(folder)
    weights = folder / ADAPTER_WEIGHTS
    st_meta = {"format": "pt"}
    if weights.is_file():
        with safe_open(str(weights), "pt") as fh:
            st_meta = fh.metadata() or {}
    seed, a_init = _seed_of(state)

    stored: dict[str, torch.Tensor] = {}
    index = []  # [key, how, dtype, shape] in the original file's order
    bit_chunks = []
    values: dict[str, list[torch.Tensor]] = {}  # kept B values of every module, concatenated per dtype
    kept = entries = regenerated = 0
    for key, tensor in state.tensors.items():
        parsed = module_name_from_key(key)
        dtype = str(tensor.dtype).removeprefix("torch.")
        how = "stored"
        if parsed and parsed[1] == "B" and tensor.dtype in _DTYPES.values():
            nonzero = (_bits(tensor) != 0).reshape(-1)
            bit_chunks.append(nonzero.numpy())
            values.setdefault(dtype, []).append(tensor.reshape(-1)[nonzero])
            kept += int(nonzero.sum())
            entries += tensor.numel()
            how = "sparse"
        elif parsed and parsed[1] == "A" and seed is not None and tensor.dim() == 2 and tensor.dtype in _DTYPES.values():
            regen = seeded_projection(seed, parsed[0], tensor.shape[0], tensor.shape[1], a_init).to(tensor.dtype)
            if _bits_equal(regen, tensor):
                how = "seeded"
                regenerated += 1
        if how == "stored":
            stored[f"T:{key}"] = tensor.contiguous()
        index.append([key, how, dtype, list(tensor.shape)])
    for dtype, chunks in values.items():
        stored[f"values:{dtype}"] = torch.cat(chunks)
    bits = np.packbits(np.concatenate(bit_chunks)) if bit_chunks else np.zeros(0, np.uint8)
    stored["masks"] = _bytes_tensor(lzma.compress(bits.tobytes(), preset=9))
    # ~100 characters per key for hundreds of keys: compressed, the index costs ~1/20 of that
    stored["index"] = _bytes_tensor(lzma.compress(json.dumps(index).encode(), preset=9))
    metadata = _pack_metadata(folder, st_meta, seed, a_init, stored)
    data = st_save(stored, metadata=metadata)
    atomic_write_bytes(out, data)
    peft_bytes = weights.stat().st_size if weights.is_file() else sum(
        t.numel() * t.element_size() for t in state.tensors.values())
    return PackReport(out, len(data), peft_bytes, kept, entries, regenerated,
                      len(state.modules()))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with safe_open(str(path), "pt") as fh:
            metadata = fh.metadata() or {}
        tensors = st_load(path.read_bytes())
    except Exception as exc:
        raise LorikitError(f"{path}: not a readable .lori file ({str(exc).splitlines()[0][:200]})") from exc
    if metadata.get("format") != PACK_FORMAT:
        raise LorikitError(f"{path}: not a lorikit packed adapter (metadata format is {metadata.get('format')!r})")
    if metadata.get("version") != PACK_VERSION:
        raise LorikitError(f"{path}: pack version {metadata.get('version')!r} is not supported (want {PACK_VERSION})")
    pack_checks.verify_digest(path, tensors, metadata)
    return tensors, metadata


def read_packed(path: str | os.PathLike) -> tuple[AdapterState, dict[str, str]]:
    """Expand a ``.lori`` file in memory: (AdapterState with the original tensors, header metadata)."""
    path = Path(path)
    stored, metadata = _read(path)
    try:
        index = json.loads(pack_checks.bounded_unlzma(_raw(stored["index"]), pack_checks.INDEX_CAP, path, "index"))
        n_bits = pack_checks.check_index(index, stored, _DTYPES, path)
        mask_bytes = pack_checks.bounded_unlzma(_raw(stored["masks"]), (n_bits + 7) // 8, path, "mask bits")
        if len(mask_bytes) != (n_bits + 7) // 8:
            raise ValueError(f"{len(mask_bytes)} bytes of mask bits, the index shapes need {(n_bits + 7) // 8}")
        packed_bits = np.frombuffer(mask_bytes, dtype=np.uint8)
        config = json.loads(metadata["adapter_config"])
        meta = json.loads(metadata["lorikit_json"]) if "lorikit_json" in metadata else None
        seed = int(metadata["seed"]) if metadata.get("seed") else None
    except (KeyError, ValueError, TypeError) as exc:
        raise LorikitError(f"{path}: corrupt .lori file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(config, dict):
        raise LorikitError(f"{path}: corrupt .lori file (adapter_config is {type(config).__name__}, not an object)")
    checks.check_config_fields(config, f"{path}: adapter_config")  # before its patterns are used
    default_r = config["r"] if "r" in config else 8
    pack_checks.check_shapes(index, lambda module: pattern_value(
        config.get("rank_pattern"), module, default_r, f"{path}: adapter_config", "rank_pattern"), path)
    a_init = metadata.get("a_init") or "kaiming"
    if a_init not in A_INITS or (seed is None and any(e[1] == "seeded" for e in index)):
        raise LorikitError(f"{path}: corrupt .lori file (header seed {metadata.get('seed')!r} / a_init {a_init!r} "
                           f"cannot regenerate A; a_init must be one of {', '.join(A_INITS)})")
    tensors: dict[str, torch.Tensor] = {}
    offset = 0
    value_offset: dict[str, int] = {}
    for key, how, dtype, shape in index:
        if how == "stored":
            tensors[key] = stored[f"T:{key}"]
        elif how == "seeded":
            module = module_name_from_key(key)[0]
            tensors[key] = seeded_projection(seed, module, shape[0], shape[1], a_init).to(_DTYPES[dtype])
        elif how == "sparse":
            n = int(np.prod(shape))
            # Only this tensor's bits are unpacked (one byte each): never the whole mask stream.
            window = np.unpackbits(packed_bits[offset // 8:(offset + n + 7) // 8])[offset % 8:offset % 8 + n]
            chunk = torch.from_numpy(window.astype(bool))
            offset += n
            k, start = int(chunk.sum()), value_offset.get(dtype, 0)
            values = stored.get(f"values:{dtype}", torch.zeros(0))[start:start + k]
            value_offset[dtype] = start + k
            if chunk.numel() != n or values.numel() != k:
                raise LorikitError(f"{path}: corrupt .lori file (mask bits of {key} do not match its values)")
            dense = torch.zeros(n, dtype=_DTYPES[dtype])
            dense[chunk] = values
            tensors[key] = dense.view(shape)
        else:
            raise LorikitError(f"{path}: corrupt .lori file (unknown storage {how!r} for {key})")
    state = AdapterState(config=config, tensors=tensors, meta=meta, source=str(path))
    validate(state, f"{path}: adapter_config", str(path))
    return state, metadata


def has_patterns(config: dict) -> bool:
    """Per-module ranks or scales (``rank_pattern`` / ``alpha_pattern``): what vLLM and other servers ignore."""
    return bool(config.get("rank_pattern") or config.get("alpha_pattern"))


def unpack_adapter(path: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                   rank_pattern: str = "pad") -> Path:
    """Write the PEFT adapter folder a ``.lori`` file was packed from.

    ``rank_pattern="pad"`` (default): an adapter whose config has ``rank_pattern`` / ``alpha_pattern``
    (a foreign PEFT adapter, a ``--rank-pattern keep`` merge) is written in the portable form instead:
    one ``r`` and one ``lora_alpha`` for every module, lower ranks padded with zero rank-columns and
    each module's scale folded into its B (``AdapterState.from_modules``), ΔW unchanged. Without
    patterns, and with ``"keep"``, the files are the packed ones byte for byte."""
    from safetensors.torch import save_file

    if rank_pattern not in ("pad", "keep"):
        raise UsageError(f"--rank-pattern {rank_pattern!r}: choose from pad, keep")
    guard_output(out, [path])
    state, metadata = read_packed(path)
    if rank_pattern == "pad" and has_patterns(state.config):
        portable = AdapterState.from_modules(state.modules(), state.config, meta=state.meta,
                                             extra_tensors=state.other_tensors())
        return portable.save(out, overwrite)
    st_meta = json.loads(metadata.get("safetensors_metadata") or '{"format": "pt"}')
    with atomic_output_dir(out, overwrite) as tmp:
        (tmp / ADAPTER_CONFIG).write_text(metadata["adapter_config"])
        save_file(state.tensors, str(tmp / ADAPTER_WEIGHTS), metadata=st_meta or None)
        if "lorikit_json" in metadata:
            (tmp / LORIKIT_META).write_text(metadata["lorikit_json"])
    return Path(out)
