"""Integrity of ``.lori`` files: a checksum over header and payload, and sizes known before expanding.

A ``.lori`` file is small and its LZMA streams expand a lot: a 333 KB file whose index claims
huge shapes made ``unpack`` allocate 19 GB, and a changed seed or value expanded silently into a
different adapter. ``unpack`` therefore checks, before decompressing or allocating anything:

- the SHA-256 recorded at pack time over every stored tensor and every header field;
- the index (decompressed to at most ``INDEX_CAP`` bytes): a list of ``[key, how, dtype, shape]``
  with known storage kinds and dtypes, 2-D shapes for sparse/seeded tensors, stored tensors present;
- the number of index entries (``MAX_ENTRIES``) and of elements per tensor (``MAX_ELEMENTS``);
- the memory unpacking needs (the tensors, the serialised copy ``save_file`` makes, the largest
  per-tensor temporary), at most ``LORIKIT_MAX_UNPACK_BYTES`` (default 8 GiB);
- each seeded A and sparse B against the config: A is ``[r, in]`` and B ``[out, r]`` with the
  module's rank, and every module of one kind (``...layers.N.self_attn.q_proj``) has the same
  ``in`` (a forged A with one more column would regenerate a tensor no base model fits);
- the mask stream, decompressed to exactly the number of bits the shapes imply and no more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import math
import os
import re
from pathlib import Path

import torch

from ..errors import LorikitError
from .state import module_name_from_key

log = logging.getLogger(__name__)
CHECKSUM_KEY = "sha256"
INDEX_CAP = 64 * 2**20
HOWS = ("stored", "seeded", "sparse")
MAX_ENTRIES = 100_000  # tensors in one adapter (all linear layers of a 400-layer model: ~6 000)
MAX_ELEMENTS = 2**31 - 1  # per tensor
_LAYER = re.compile(r"\.\d+\.")


def max_unpack_bytes() -> int:
    return int(os.environ.get("LORIKIT_MAX_UNPACK_BYTES", 8 * 2**30))


def digest(stored: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 over every tensor (key, dtype, shape, bytes) and header field except the checksum."""
    h = hashlib.sha256()
    for key in sorted(stored):
        t = stored[key].contiguous()
        h.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    fields = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    h.update(json.dumps(fields, sort_keys=True).encode())
    return h.hexdigest()


def verify_digest(path: Path, stored: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    recorded = metadata.get(CHECKSUM_KEY)
    if recorded is None:
        log.warning("%s: no checksum in the header (packed before lorikit recorded one): not verified", path)
        return
    if digest(stored, metadata) != recorded:
        raise LorikitError(f"{path}: checksum mismatch: the file was changed or damaged after packing")


def bounded_unlzma(data: bytes, cap: int, path: Path, what: str) -> bytes:
    """Decompress at most ``cap`` bytes; more (or a truncated stream) is an error naming ``what``."""
    dec = lzma.LZMADecompressor()
    try:
        out = dec.decompress(data, max_length=cap + 1)
    except lzma.LZMAError as exc:
        raise LorikitError(f"{path}: corrupt .lori file ({what}: {exc})") from exc
    if len(out) > cap or not dec.eof:
        raise LorikitError(f"{path}: corrupt .lori file ({what} is larger than the {cap} bytes its header allows, "
                           f"or truncated)")
    return out


def check_index(index, stored: dict[str, torch.Tensor], dtypes: dict[str, torch.dtype], path: Path) -> int:
    """Validate the index; returns the number of mask bits the sparse tensors need."""
    if not isinstance(index, list):
        raise LorikitError(f"{path}: corrupt .lori file (index is {type(index).__name__}, expected a list)")
    if len(index) > MAX_ENTRIES:
        raise LorikitError(f"{path}: the index lists {len(index)} tensors, more than the {MAX_ENTRIES} allowed")
    bits = total = largest = 0
    biggest = (0, "")
    for n, entry in enumerate(index):
        if not (isinstance(entry, list) and len(entry) == 4 and all(isinstance(x, str) for x in entry[:3])
                and isinstance(entry[3], list) and all(isinstance(d, int) and d >= 0 for d in entry[3])):
            raise LorikitError(f"{path}: corrupt .lori file (index entry {n} is not [key, how, dtype, shape])")
        key, how, dtype, shape = entry
        if how not in HOWS:
            raise LorikitError(f"{path}: corrupt .lori file (unknown storage {how!r} for {key})")
        if how == "stored":
            if f"T:{key}" not in stored:
                raise LorikitError(f"{path}: corrupt .lori file (tensor {key} is missing)")
            continue
        if dtype not in dtypes:
            raise LorikitError(f"{path}: corrupt .lori file (unknown dtype {dtype!r} for {key})")
        if len(shape) != 2:
            raise LorikitError(f"{path}: corrupt .lori file ({key} has shape {shape}, expected 2-D)")
        numel = math.prod(shape)
        biggest = max(biggest, (numel, key))
        total += numel * dtypes[dtype].itemsize
        bits += numel if how == "sparse" else 0
        # seeded: generated in float32 then cast; sparse: unpacked bits, their bool copy, the dense tensor
        largest = max(largest, numel * (4 if how == "seeded" else 2))
    stored_bytes = sum(t.numel() * t.element_size() for t in stored.values())
    need = 2 * total + largest + stored_bytes
    if need > max_unpack_bytes():
        raise LorikitError(f"{path}: the header claims {total / 2**30:.1f} GiB of tensors, {need / 2**30:.1f} GiB of "
                           f"memory to unpack, more than the {max_unpack_bytes() / 2**30:.1f} GiB allowed "
                           f"(set LORIKIT_MAX_UNPACK_BYTES to raise it)")
    if biggest[0] > MAX_ELEMENTS:
        raise LorikitError(f"{path}: the header gives {biggest[1]} {biggest[0]} elements, more than the "
                           f"{MAX_ELEMENTS} a tensor may have")
    return bits


def check_shapes(index, rank_of, path: Path) -> None:
    """Seeded A ``[r, in]`` and sparse B ``[out, r]`` agree with the config's rank of their module, and
    the modules of one kind have one ``in``; ``rank_of(module)`` is the config's rank."""
    in_dims: dict[tuple[str, str], tuple[int, str]] = {}
    for key, how, _, shape in index:
        parsed = module_name_from_key(key)
        if how == "stored" or parsed is None:
            continue
        module, which = parsed
        rank = rank_of(module)
        if (which == "A" and shape[0] != rank) or (which == "B" and shape[1] != rank):
            raise LorikitError(f"{path}: corrupt .lori file ({key} has shape {shape}, but the config's rank of "
                               f"{module} is {rank})")
        if which == "A":
            kind = (_LAYER.sub(".N.", module), which)
            first = in_dims.setdefault(kind, (shape[1], key))
            if first[0] != shape[1]:
                raise LorikitError(f"{path}: corrupt .lori file ({key} has {shape[1]} columns, {first[1]} of the "
                                   f"same kind has {first[0]})")
