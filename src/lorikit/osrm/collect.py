"""Collecting OSRM feature statistics: what each task's data feeds into every target module (docs/methods.md#osrm).

For task k and target module m with input h ∈ R^d at every *real* token (padding excluded — the
reference averages over padding positions too, a defect lorikit fixes):

    n_k   = number of real tokens
    μ_k   = (1 / n_k) Σ_tokens h                      (mean mode's input)
    M_k   = Σ_tokens h hᵀ   (un-centred, not divided)  (cov mode's input)

Inputs are captured with forward pre-hooks on the **pretrained** model and accumulated batch by
batch in float64 accumulators (only the upper triangle of Σ h hᵀ is computed, by column panels), so memory is O(d²) per module whatever the number of samples.
Modules that receive the same input tensor (q/k/v read the same normed hidden state, gate/up
too) are detected by tensor identity on the first batch and share one set of statistics.

On disk (``--out stats/``): ``osrm_stats.json`` (model, tasks, module → group map, sizes) and one
``<task>.safetensors`` per task with ``<group>.mean``, ``<group>.count`` and
``<group>.second_moment`` tensors.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..data import load_examples
from ..data.tokenize import pad_right
from ..errors import LorikitError, UsageError
from ..models import load_model, resolve_device
from ..utils.atomic import atomic_output_dir, check_output_dir
from .config import GRAM_DTYPES, StatsConfig  # noqa: F401 (public here too)
from .reader import FORMAT_VERSION, MANIFEST

class InputRecorder:
    """Forward pre-hooks that stream count / Σh / Σhhᵀ of each target module's input.

    Set ``mask`` ([batch, seq] bool, True at real tokens) before each forward. Groups of modules
    sharing one input tensor are found on the first forward and only their first module
    accumulates.
    """

    def __init__(self, model: torch.nn.Module, target_modules: list[str], second_moment: bool = True,
                 gram_dtype: torch.dtype = torch.float64,
                 targets: list[tuple[str, torch.nn.Module]] | None = None):
        # ``targets``: explicit (name, module) pairs instead of matching ``target_modules`` in ``model``
        self.targets = targets if targets is not None else [
            (name, mod) for name, mod in model.named_modules()
            if name and name.rsplit(".", 1)[-1] in set(target_modules) and isinstance(mod, torch.nn.Linear)]
        if not self.targets:
            raise UsageError(f"--target-modules {' '.join(target_modules)}: no Linear module of this model matches")
        self.second_moment = second_moment
        self.gram_dtype = gram_dtype
        self.mask: torch.Tensor | None = None
        self.group_of: dict[str, str] = {}  # module → module whose statistics it shares
        self._seen: dict[int, tuple[str, torch.Tensor]] | None = None  # first forward only
        self.reset()
        self._handles = [mod.register_forward_pre_hook(self._hook(name)) for name, mod in self.targets]

    def reset(self) -> None:
        self.count: dict[str, int] = {}
        self.total: dict[str, torch.Tensor] = {}
        self.gram: dict[str, torch.Tensor] = {}

    def close(self) -> None:
        for h in self._handles:
            h.remove()

    def _hook(self, name: str):
        def hook(module, args):
            x = args[0]
            if not self.group_of.get(name, name) == name:
                return
            if name not in self.group_of:  # first forward: find modules reading the same tensor
                assert self._seen is not None, "call begin_grouping() before the first forward"
                owner = self._seen.get(id(x))
                if owner is not None and owner[1] is x:
                    self.group_of[name] = owner[0]
                    return
                self._seen[id(x)] = (name, x)  # holding x keeps its id unique during this forward
                self.group_of[name] = name
            self._accumulate(name, x)
        return hook

    def begin_grouping(self) -> None:
        self._seen = {} if len(self.group_of) < len(self.targets) else None

    def end_grouping(self) -> None:
        self._seen = None

    @torch.no_grad()
    def _accumulate(self, name: str, x: torch.Tensor) -> None:
        mask = self.mask
        if mask is None or mask.shape != x.shape[:-1]:
            raise LorikitError(f"module {name}: input of shape {tuple(x.shape)} does not match the token mask")
        h = x[mask]  # [real tokens, d]
        d = h.shape[-1]
        if name not in self.count:
            self.count[name] = 0
            self.total[name] = torch.zeros(d, dtype=torch.float64, device=x.device)
            if self.second_moment:
                self.gram[name] = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        self.count[name] += h.shape[0]
        self.total[name] += h.sum(0, dtype=torch.float64)
        if self.second_moment:
            add_upper_gram(self.gram[name], h.to(self.gram_dtype))

    def tensors(self) -> dict[str, torch.Tensor]:
        """``<group>.count|mean|second_moment`` for every group seen (cpu, float64)."""
        out: dict[str, torch.Tensor] = {}
        for name, n in self.count.items():
            out[f"{name}.count"] = torch.tensor([n], dtype=torch.int64)
            out[f"{name}.mean"] = (self.total[name] / max(n, 1)).cpu()
            if self.second_moment:
                upper = self.gram[name]
                out[f"{name}.second_moment"] = (torch.triu(upper) + torch.triu(upper, 1).T).cpu()
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.total.values(), *self.gram.values()])


GRAM_BLOCK = 384  # column panels below this size lose more to small matmuls than symmetry saves


def add_upper_gram(acc: torch.Tensor, h: torch.Tensor) -> None:
    """acc[i, j] += Σ_t h[t, i] h[t, j] for j ≥ i only (acc is float64; its upper triangle is kept).

    Σ h hᵀ is symmetric: row panel i needs only columns from its own diagonal block rightwards,
    so with k panels the products cost (k + 1) / 2k of the full hᵀh (62% for k = 4, d = 1536).
    """
    d = h.shape[1]
    k = max(1, d // GRAM_BLOCK)
    edges = [round(i * d / k) for i in range(k + 1)]
    for lo, hi in zip(edges[:-1], edges[1:]):
        panel = acc[lo:hi, lo:]
        if h.dtype == acc.dtype:
            panel.addmm_(h[:, lo:hi].T, h[:, lo:])
        else:  # a float32 product per batch, summed in float64 across batches
            panel += (h[:, lo:hi].T @ h[:, lo:]).to(acc.dtype)


def task_texts(spec: str, fmt: str, samples: int, seed: int) -> list[str]:
    """``samples`` prompt+response texts drawn from ``spec`` with a fixed seed (all when fewer)."""
    examples = load_examples(spec, fmt)
    picked = sorted(random.Random(seed).sample(range(len(examples)), min(samples, len(examples))))
    # a conversation's turns joined (the statistics read inputs, not the chat template's markup)
    return [examples[i].prompt + examples[i].response if examples[i].messages is None
            else "\n".join(t["content"] for t in examples[i].messages) for i in picked]


def token_batches(tokenizer, texts: list[str], max_length: int, batch_size: int):
    """Right-padded (input_ids, attention_mask) batches of the texts, truncated to ``max_length``."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = [tokenizer(t, truncation=True, max_length=max_length).input_ids for t in texts]
    for i in range(0, len(ids), batch_size):
        yield pad_right(ids[i:i + batch_size], pad)


def body_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer body without the LM / classification head (statistics need no logits)."""
    if hasattr(model, "get_decoder"):
        try:
            decoder = model.get_decoder()
        except (AttributeError, NotImplementedError):
            decoder = None
        if isinstance(decoder, torch.nn.Module):
            return decoder
    base = getattr(model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) else model


@torch.no_grad()
def record_task(recorder: InputRecorder, model: torch.nn.Module, batches, device, desc: str = "") -> None:
    body = body_of(model)
    recorder.reset()
    for input_ids, mask in tqdm(list(batches), desc=desc or "osrm-stats", unit="batch", dynamic_ncols=True):
        input_ids, mask = input_ids.to(device), mask.to(device)
        recorder.mask = mask.bool()
        recorder.begin_grouping()
        body(input_ids=input_ids, attention_mask=mask, use_cache=False)
        recorder.end_grouping()
    recorder.mask = None


def collect_stats(cfg: StatsConfig) -> Path:
    """Run ``cfg`` and write the statistics folder; returns its path."""
    check_output_dir(cfg.out, cfg.overwrite, inputs=[cfg.model, cfg.data])
    tasks = cfg.tasks()
    texts = {name: task_texts(spec, cfg.format, cfg.samples, cfg.seed) for name, spec in tasks.items()}
    device = resolve_device(cfg.device)
    bundle = load_model(cfg.model, device=str(device))
    recorder = InputRecorder(bundle.model, cfg.target_modules, cfg.second_moment, getattr(torch, cfg.gram_dtype))
    manifest = {
        "format": FORMAT_VERSION, "model": bundle.base_model_id, "samples": cfg.samples, "seed": cfg.seed,
        "max_length": cfg.max_length, "second_moment": cfg.second_moment, "gram_dtype": cfg.gram_dtype,
        "padding": "excluded", "tasks": {}, "modules": {}, "dims": {},
    }
    with atomic_output_dir(cfg.out, cfg.overwrite) as tmp:
        try:
            for name, spec in tasks.items():
                batches = token_batches(bundle.tokenizer, texts[name], cfg.max_length, cfg.batch_size)
                record_task(recorder, bundle.model, batches, device, desc=f"osrm-stats {name}")
                tensors = recorder.tensors()
                save_file(tensors, str(tmp / f"{name}.safetensors"), metadata={"task": name})
                tokens = next(iter(recorder.count.values()))
                manifest["tasks"][name] = {"data": spec, "examples": len(texts[name]), "tokens": tokens,
                                           "file": f"{name}.safetensors"}
        finally:
            recorder.close()
        manifest["modules"] = dict(sorted(recorder.group_of.items()))
        manifest["dims"] = {g: int(recorder.total[g].numel()) for g in sorted(recorder.total)}
        manifest["bytes_per_task"] = recorder.nbytes()
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(cfg.out)
