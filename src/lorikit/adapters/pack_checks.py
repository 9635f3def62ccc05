"""Integrity of ``.lori`` files: a checksum over header and payload, and sizes known before expanding.

A ``.lori`` file is small and its LZMA streams expand a lot: a 333 KB file whose index claims
huge shapes made ``unpack`` allocate 19 GB, and a changed seed or value expanded silently into a
different adapter. ``unpack`` therefore checks, before decompressing or allocating anything:

- the SHA-256 recorded at pack time over every stored tensor and every header field;
- the index (decompressed to at most ``INDEX_CAP`` bytes): a list of ``[key, how, dtype, shape]``
  with known storage kinds and dtypes, 2-D shapes for sparse/seeded tensors, stored tensors present;
- the expanded size those shapes imply, at most ``LORIKIT_MAX_UNPACK_BYTES`` (default 8 GiB);
- the mask stream, decompressed to exactly the number of bits the shapes imply and no more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import math
import os
from pathlib import Path

import torch

from ..errors import LorikitError

log = logging.getLogger(__name__)
CHECKSUM_KEY = "sha256"
INDEX_CAP = 64 * 2**20
HOWS = ("stored", "seeded", "sparse")


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
    bits = total = 0
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
        total += numel * dtypes[dtype].itemsize
        bits += numel if how == "sparse" else 0
    if total > max_unpack_bytes():
        raise LorikitError(f"{path}: the header claims {total / 2**30:.1f} GiB of tensors, more than the "
                           f"{max_unpack_bytes() / 2**30:.1f} GiB allowed (set LORIKIT_MAX_UNPACK_BYTES to raise it)")
    return bits
