"""Batched generation: left padding, KV cache, greedy by default, stop at EOS or a stop string."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..errors import UsageError


@dataclass
class GenerationConfig:
    """How to decode."""

    max_new_tokens: int = field(default=128, metadata={"help": "tokens generated per prompt at most"})
    batch_size: int = field(default=16, metadata={"help": "prompts decoded together (left-padded)"})
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


def cut_at_stop(text: str, stops: list[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], cfg: GenerationConfig | None = None,
             progress: bool = True) -> list[list[str]]:
    """``num_samples`` completions (text after the prompt) for every prompt, in prompt order."""
    cfg = cfg or GenerationConfig()
    model.eval()
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    out: list[list[str]] = []
    torch.manual_seed(cfg.seed)
    # Longest prompts first keeps padding small inside each batch; results go back in order.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: dict[int, list[str]] = {}
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    for idx in tqdm(batches, desc="generate", unit="batch", disable=not progress or len(batches) < 2):
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
        gen_kwargs = dict(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                          num_return_sequences=cfg.num_samples, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, use_cache=True)
        if cfg.do_sample:
            gen_kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            gen_kwargs.update(stop_strings=list(cfg.stop), tokenizer=tokenizer)
        seqs = model.generate(**enc, **gen_kwargs)
        new = seqs[:, enc["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, i in enumerate(idx):
            chunk = texts[j * cfg.num_samples:(j + 1) * cfg.num_samples]
            results[i] = [cut_at_stop(t, cfg.stop) for t in chunk]
    out = [results[i] for i in range(len(prompts))]
    return out
