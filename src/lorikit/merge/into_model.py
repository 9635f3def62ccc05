"""Write a base model with merged updates added: safetensors shards, streamed tensor by tensor.

The base weights are read one tensor at a time (``safe_open`` on the model's own shards; the
in-code ``tiny-random-llama`` comes from its state dict), each adapted module's weight gets its
merged ΔW (computed on demand in float32, added in float32, cast back to the weight's dtype), and
tensors are collected into an output shard that is written and freed once it reaches
``max_shard_size``. Peak memory is about one output shard + one module's updates + the adapters
(mergekit's habit). config.json, generation_config.json and the tokenizer files are copied so
``AutoModelForCausalLM.from_pretrained(out)`` works.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..errors import LorikitError
from ..models import load_model
from ..models.loading import TINY, resolve_folder

INDEX = "model.safetensors.index.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5", ".ckpt")


class BaseWeights:
    """The base model's tensors in storage order plus its non-weight files."""

    def __init__(self, name: str):
        self.name = name
        self.folder: Path | None = None
        self._bundle = None
        if name == TINY:
            self._bundle = load_model(name)
            return
        path, _ = resolve_folder(name)
        if not Path(path).is_dir():
            try:
                from huggingface_hub import snapshot_download

                path = snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                               "*.jinja", "tokenizer*"])
            except Exception as exc:  # offline, unknown repo, auth
                raise LorikitError(f"--model {name}: not a local folder and could not be fetched "
                                   f"from the Hub ({type(exc).__name__})") from exc
        self.folder = Path(path)
        self.files = self._shards()

    def _shards(self) -> list[Path]:
        index = self.folder / INDEX
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            files = sorted(set(weight_map.values()))
            return [self.folder / f for f in files]
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            raise LorikitError(f"--model {self.name}: {self.folder} has no *.safetensors weights "
                               f"(convert .bin checkpoints with save_pretrained(safe_serialization=True))")
        return files

    def count(self) -> int:
        if self._bundle is not None:
            return len(self._bundle.model.state_dict())
        total = 0
        for f in self.files:
            with safe_open(str(f), framework="pt") as fh:
                total += len(list(fh.keys()))
        return total

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        if self._bundle is not None:
            for key, value in self._bundle.model.state_dict().items():
                yield key, value.detach().clone()
            return
        for f in self.files:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():
                    yield key, fh.get_tensor(key)

    def write_side_files(self, out: Path) -> None:
        if self._bundle is not None:
            model = self._bundle.model
            model.config.save_pretrained(out)
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.save_pretrained(out)
            self._bundle.tokenizer.save_pretrained(out)
            return
        for item in sorted(self.folder.iterdir()):
            if item.is_file() and item.name != INDEX and not item.name.endswith(_WEIGHT_SUFFIXES):
                shutil.copy2(item, out / item.name)


def write_model(base: BaseWeights, delta_for: Callable[[str], torch.Tensor], modules: list[str], out: Path,
                max_shard_size: int, transpose: bool = False, desc: str = "merge") -> dict:
    """Stream ``base`` into ``out`` with ``delta_for(module)`` added to ``module.weight``.

    Returns {"shards": n, "total_size": bytes, "modules": count}. Raises if a module has no weight
    in the base model or its shape differs from the update.
    """
    wanted = {f"{m}.weight": m for m in modules}
    done: set[str] = set()
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = 0
    written: list[tuple[str, list[str]]] = []
    total_size = 0

    def flush() -> None:
        nonlocal shard, shard_bytes
        if not shard:
            return
        tmp_name = f"shard-{len(written):05d}.safetensors"
        save_file(shard, str(out / tmp_name), metadata={"format": "pt"})
        written.append((tmp_name, list(shard)))
        shard, shard_bytes = {}, 0

    bar = tqdm(total=len(modules), desc=desc, unit="module", leave=False)
    for key, tensor in base.tensors():
        module = wanted.get(key)
        if module is not None:
            delta = delta_for(module)
            if transpose:
                delta = delta.T
            if tuple(delta.shape) != tuple(tensor.shape):
                raise LorikitError(f"--model {base.name}: {key} has shape {tuple(tensor.shape)}, the merged "
                                   f"update {tuple(delta.shape)} (adapters were trained on another model?)")
            tensor = (tensor.float() + delta).to(tensor.dtype)
            del delta
            done.add(module)
            bar.update(1)
        size = tensor.numel() * tensor.element_size()
        if shard and shard_bytes + size > max_shard_size:
            flush()
        shard[key] = tensor.contiguous()
        shard_bytes += size
        total_size += size
    flush()
    bar.close()
    missing = [m for m in modules if m not in done]
    if missing:
        raise LorikitError(f"--model {base.name}: has no weight {missing[0]}.weight that the adapters adapt")
    weight_map = {}
    if len(written) == 1:
        os.replace(out / written[0][0], out / "model.safetensors")
    else:
        for i, (tmp_name, keys) in enumerate(written, 1):
            final = f"model-{i:05d}-of-{len(written):05d}.safetensors"
            os.replace(out / tmp_name, out / final)
            weight_map.update({k: final for k in keys})
        (out / INDEX).write_text(json.dumps({"metadata": {"total_size": total_size},
                                             "weight_map": weight_map}, indent=2) + "\n")
    base.write_side_files(out)
    return {"shards": len(written), "total_size": total_size, "modules": len(done)}
