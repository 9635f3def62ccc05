"""Batched generation: left padding, KV cache, greedy by default, stop at EOS or a stop string."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..errors import UsageError
from ..utils.validate import check_number, check_seed


@dataclass
class GenerationConfig:
    """How to decode."""

    max_new_tokens: int = field(default=128, metadata={"help": "tokens generated per prompt at most"})
    batch_size: int = field(default=16, metadata={"help": "sequences decoded together (left-padded)"})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy decoding"})
    temperature: float = field(default=0.2, metadata={"help": "sampling temperature (with --do-sample)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass (with --do-sample)"})
    num_samples: int = field(default=1, metadata={"help": "completions per prompt (for pass@k)"})
    stop: list[str] = field(default_factory=list, metadata={"help": "cut each completion at the first of these strings"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise UsageError(f"--max-new-tokens {self.max_new_tokens}: must be positive")
        if self.batch_size <= 0:
            raise UsageError(f"--batch-size {self.batch_size}: must be positive")
        if self.num_samples <= 0:
            raise UsageError(f"--num-samples {self.num_samples}: must be positive")
        if self.num_samples > 1 and not self.do_sample:
            raise UsageError("--num-samples > 1 needs --do-sample (greedy decoding repeats itself)")
        if self.do_sample:
            check_number("--temperature", self.temperature, low=0, low_open=True)
            check_number("--top-p", self.top_p, low=0, high=1, low_open=True)
        check_seed("--seed", self.seed)


def cut_at_stop(text: str, stops: list[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


def _eos_ids(model, tokenizer) -> list[int]:
    """EOS ids from the tokenizer and the model's generation config (chat models often add one)."""
    ids: list[int] = []
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        for i in (value if isinstance(value, (list, tuple)) else [value]):
            if i is not None and i not in ids:
                ids.append(int(i))
    return ids


def _generated_length(row: torch.Tensor, eos: set[int]) -> int:
    """Tokens the model actually produced in ``row`` (up to and including the first EOS)."""
    for pos, tok in enumerate(row.tolist()):
        if tok in eos:
            return pos + 1
    return len(row)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], cfg: GenerationConfig | None = None,
             progress: bool = True, stats: dict | None = None) -> list[list[str]]:
    """``num_samples`` completions (text after the prompt) for every prompt, in prompt order.

    Prompts are left-padded into batches of ``batch_size`` sequences (so ``batch_size //
    num_samples`` prompts per batch), decoded with the KV cache, and each completion is cut at the
    first stop string. If ``stats`` is a dict it receives ``new_tokens`` (tokens produced, up to
    each sequence's EOS) and ``sequences``.
    """
    cfg = cfg or GenerationConfig()
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device
    eos = _eos_ids(model, tokenizer)
    per_batch = max(1, cfg.batch_size // cfg.num_samples)
    # Longest prompts first keeps padding small inside each batch; results go back in order.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: dict[int, list[str]] = {}
    new_tokens = 0
    batches = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        for idx in tqdm(batches, desc="generate", unit="batch", disable=not progress or len(batches) < 2):
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            gen_kwargs = dict(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                              num_return_sequences=cfg.num_samples, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=eos, use_cache=True)
            if cfg.do_sample:
                gen_kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=None)
            else:
                gen_kwargs.update(temperature=None, top_p=None, top_k=None)
            if cfg.stop:
                gen_kwargs.update(stop_strings=list(cfg.stop), tokenizer=tokenizer)
            seqs = model.generate(**enc, **gen_kwargs)
            new = seqs[:, enc["input_ids"].shape[1]:]
            new_tokens += sum(_generated_length(row, set(eos)) for row in new)
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                chunk = texts[j * cfg.num_samples:(j + 1) * cfg.num_samples]
                results[i] = [cut_at_stop(t, cfg.stop) for t in chunk]
    if stats is not None:
        stats.update(new_tokens=new_tokens, sequences=len(prompts) * cfg.num_samples)
    return [results[i] for i in range(len(prompts))]
