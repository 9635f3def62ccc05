"""Batched generation: left padding, KV cache, greedy by default, stop at EOS or a stop string.

The decoding loop is lorikit's own (the same greedy tokens as ``model.generate``, tested):

- prompts are tokenised once and sorted by token length, longest first, into batches of similar
  length (little padding); completions come back in prompt order;
- each sequence stops on its own, at an EOS id (the tokenizer's and the generation config's) or
  when a stop string appears in its completion, and a finished sequence leaves the batch: its
  rows are dropped from the KV cache, so it costs no more decode work (``model.generate`` keeps
  decoding finished rows as padding until the whole batch is done);
- the LM head runs at the last position only, also for the prompt (``logits_to_keep=1``).
"""

from __future__ import annotations

import inspect

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from ..models.cache import cache_kwargs, new_cache
from .generation_config import GenerationConfig


def cut_at_stop(text: str, stops: list[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


def eos_ids(model, tokenizer) -> list[int]:
    """EOS ids from the tokenizer and the model's generation config (chat models often add one)."""
    ids: list[int] = []
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        for i in (value if isinstance(value, (list, tuple)) else [value]):
            if i is not None and i not in ids:
                ids.append(int(i))
    return ids


class _Stopper:
    """Per sequence: finished at an EOS id, or once a stop string appears in its completion.

    Only the completion's last few tokens are decoded each step (a stop string of L characters
    spans at most L + 1 tokens), since an earlier occurrence would have stopped the sequence."""

    def __init__(self, tokenizer, eos: list[int], stops: list[str]):
        self.tokenizer, self.eos, self.stops = tokenizer, set(eos), [s for s in stops if s]
        self.window = max((len(s) for s in self.stops), default=0) + 2

    def done(self, tokens: list[int]) -> bool:
        if tokens[-1] in self.eos:
            return True
        if not self.stops:
            return False
        tail = self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=True)
        return any(s in tail for s in self.stops)


def _forward_kwargs(model, cache) -> dict:
    """The cache under the forward's name for it (``cache`` in transformers >= 5.2x, else
    ``past_key_values``), and ``logits_to_keep=1`` where the model supports it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = cache_kwargs(base, cache)
    if "logits_to_keep" in inspect.signature(base.forward).parameters:
        kwargs["logits_to_keep"] = 1
    return kwargs


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids under left padding (as ``model.generate`` computes them)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _decode_batch(model, ids: torch.Tensor, mask: torch.Tensor, cfg: GenerationConfig, stopper: _Stopper,
                  warpers: LogitsProcessorList | None) -> list[list[int]]:
    """New tokens for each row of a left-padded batch; finished rows leave the KV cache."""
    cache = new_cache()
    fixed = _forward_kwargs(model, cache)
    out = [[] for _ in range(ids.shape[0])]
    alive = list(range(ids.shape[0]))  # batch row -> index into ``out``
    step_ids, pos = ids, _positions(mask)
    for _ in range(cfg.max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, **fixed).logits[:, -1].float()
        if warpers is not None:
            probs = torch.softmax(warpers(None, logits), dim=-1)
            nxt = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            nxt = logits.argmax(-1)
        keep = []
        for row, tok in enumerate(nxt.tolist()):
            seq = out[alive[row]]
            seq.append(tok)
            if not stopper.done(seq):
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep, device=ids.device)
            cache.batch_select_indices(index)
            mask, nxt = mask[index], nxt[index]
            alive = [alive[r] for r in keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        step_ids, pos = nxt[:, None], mask.sum(-1, keepdim=True) - 1
    return out


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], cfg: GenerationConfig | None = None,
             progress: bool = True, stats: dict | None = None) -> list[list[str]]:
    """``num_samples`` completions (text after the prompt) for every prompt, in prompt order.

    Prompts are sorted by token length and left-padded into batches of ``batch_size`` sequences
    (so ``batch_size // num_samples`` prompts per batch), decoded with the KV cache, each sequence
    stopping at EOS or a stop string, and each completion is cut at the first stop string. If
    ``stats`` is a dict it receives ``new_tokens`` (tokens produced, up to each sequence's EOS or
    stop) and ``sequences``.
    """
    cfg = cfg or GenerationConfig()
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    stopper = _Stopper(tokenizer, eos_ids(model, tokenizer), list(cfg.stop))
    warpers = LogitsProcessorList([TemperatureLogitsWarper(cfg.temperature), TopPLogitsWarper(cfg.top_p)]) \
        if cfg.do_sample else None
    encoded = [tokenizer(p, add_special_tokens=True).input_ids for p in prompts]
    per_batch = max(1, cfg.batch_size // cfg.num_samples)
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    batches = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
    results: dict[int, list[str]] = {}
    new_tokens = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        for idx in tqdm(batches, desc="generate", unit="batch", disable=not progress or len(batches) < 2):
            rows = [encoded[i] for i in idx for _ in range(cfg.num_samples)]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            new = _decode_batch(model, ids, mask, cfg, stopper, warpers)
            new_tokens += sum(len(t) for t in new)
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                chunk = texts[j * cfg.num_samples:(j + 1) * cfg.num_samples]
                results[i] = [cut_at_stop(t, cfg.stop) for t in chunk]
    if stats is not None:
        stats.update(new_tokens=new_tokens, sequences=len(prompts) * cfg.num_samples)
    return [results[i] for i in range(len(prompts))]
