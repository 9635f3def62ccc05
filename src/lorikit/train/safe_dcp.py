"""``torch.distributed.checkpoint`` reads, with no code run from the checkpoint's files.

DCP unpickles its ``.metadata`` file with ``pickle.load`` and the non-tensor entries of a state
dict with ``torch.load(weights_only=False)``: a file planted in a checkpoint folder would run when
``--resume`` reads it. Here the metadata goes through an unpickler that builds only DCP's own
metadata records (and the torch sizes, dtypes and layouts they hold), and the other entries
through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from ..errors import UsageError

_METADATA_MODULE = "torch.distributed.checkpoint.metadata"
_ALLOWED = {
    (_METADATA_MODULE, name) for name in ("Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                                          "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                                          "_MEM_FORMAT_ENCODING")
} | {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
     ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
     ("collections", "OrderedDict")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.memory_format)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


def refused(path: Path, exc: Exception) -> UsageError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return UsageError(f"{path}: refused: holds Python objects other than tensors and plain values "
                      f"(lorikit writes none: it was altered or is not lorikit's): {reason}")


class SafeReader(FileSystemReader):
    def read_metadata(self, *args, **kwargs) -> Metadata:
        rank = kwargs.get("rank")
        path = Path(str(self.path)) / (".metadata" if rank is None else f"__{rank}.metadata")
        try:
            with open(path, "rb") as fh:
                metadata = _MetadataUnpickler(fh).load()
        except pickle.UnpicklingError as exc:
            raise refused(path, exc) from exc
        if not isinstance(metadata, Metadata):
            raise refused(path, TypeError(f"a {type(metadata).__name__}, not DCP metadata"))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafePlanner(DefaultLoadPlanner):
    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        try:
            obj = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise refused(self.folder / f"({read_item.dest_index.fqn})", exc) from exc
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj
