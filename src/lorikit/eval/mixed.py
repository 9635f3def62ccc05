"""Mixed-adapter batches: several adapters, one pass over the base model (PEFT's ``adapter_names=``).

Load every adapter once into one PeftModel (``load_adapters``), then decode a batch whose rows
each name their own adapter — or ``BASE`` for the base model alone — e.g. every task's adapter of
an EMR merge on that task's prompts, or several single-task adapters on one evaluation set,
without loading the base model once per adapter. Greedy rows give the same text as decoding each
adapter's prompts separately (tested).
"""

from __future__ import annotations

import os

import torch
from tqdm.auto import tqdm

from ..adapters.build import load_peft
from ..errors import UsageError
from .generate import GenerationConfig, cut_at_stop

BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names


def load_adapters(model: torch.nn.Module, adapters: dict[str, str | os.PathLike]):
    """A PeftModel carrying every adapter of ``{name: folder or Hub id}`` under its name."""
    if not adapters:
        raise UsageError("adapters: give at least one name -> adapter folder")
    if BASE in adapters:
        raise UsageError(f"adapters: {BASE!r} is reserved for the base model")
    peft_model = model
    for name, path in adapters.items():  # the first wraps the model, the others join it
        peft_model = load_peft(peft_model, path, adapter_name=name)
    return peft_model.eval()


@torch.no_grad()
def generate_mixed(peft_model, tokenizer, prompts: list[str], adapter_names: list[str],
                   cfg: GenerationConfig | None = None, progress: bool = True) -> list[str]:
    """One completion per prompt, row i decoded with adapter ``adapter_names[i]`` (or ``BASE``)."""
    cfg = cfg or GenerationConfig()
    if len(prompts) != len(adapter_names):
        raise UsageError(f"adapter_names: {len(adapter_names)} names for {len(prompts)} prompts")
    if cfg.num_samples != 1 or cfg.do_sample:
        raise UsageError("mixed-adapter batches decode greedily, one completion per prompt")
    known = set(peft_model.peft_config) | {BASE}
    unknown = [n for n in adapter_names if n not in known]
    if unknown:
        raise UsageError(f"adapter_names: {unknown[0]!r} is not loaded (loaded: {', '.join(sorted(known))})")
    tokenizer.padding_side = "left"
    device = next(peft_model.parameters()).device
    eos = sorted({i for i in (tokenizer.eos_token_id, peft_model.generation_config.eos_token_id)
                  for i in (i if isinstance(i, (list, tuple)) else [i]) if i is not None})
    out: list[str] = []
    starts = range(0, len(prompts), cfg.batch_size)
    for start in tqdm(starts, desc="generate (mixed)", unit="batch", disable=not progress or len(starts) < 2):
        chunk = prompts[start:start + cfg.batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, return_token_type_ids=False).to(device)
        seqs = peft_model.generate(**enc, adapter_names=adapter_names[start:start + cfg.batch_size],
                                   max_new_tokens=cfg.max_new_tokens, do_sample=False, temperature=None,
                                   top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=eos, use_cache=True)
        texts = tokenizer.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        out += [cut_at_stop(t, cfg.stop) for t in texts]
    return out
