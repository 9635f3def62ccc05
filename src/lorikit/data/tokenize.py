"""Tokenise prompt/response pairs for supervised fine-tuning on the response only (+ EOS)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt positions


def tokenize_example(tok, prompt: str, response: str, max_length: int = 512,
                     max_prompt_length: int | None = 256) -> TokenizedExample:
    """Prompt tokens (left-truncated to ``max_prompt_length``) + response + EOS, labels on the response.

    The response is truncated on the right when prompt + response exceed ``max_length``; EOS is
    kept only when the whole response fits, so a cut-off answer is never taught to stop.
    """
    p = tok(prompt, add_special_tokens=True).input_ids
    r = tok(response, add_special_tokens=False).input_ids + [tok.eos_token_id]
    if max_prompt_length is not None and len(p) > max_prompt_length:
        p = p[-max_prompt_length:]
    r = r[: max(0, max_length - len(p))]
    return TokenizedExample(p + r, [IGNORE] * len(p) + r)


def encode(tok, first: str, second: str | None, max_length: int) -> list[int]:
    """Token ids; pairs use the tokenizer's pair template when it has a separator (encoders),
    otherwise the two texts joined by a newline (decoders have no pair template)."""
    if second is not None and getattr(tok, "sep_token", None) is None:
        first, second = f"{first}\n{second}", None
    return tok(first, second, truncation=True, max_length=max_length).input_ids


def pad_right(sequences: list[list[int]], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(padded [n, longest] long tensor, attention mask with 1 on real positions)."""
    width = max(len(s) for s in sequences)
    padded = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        padded[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return padded, mask


def collate(batch: list[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked in attention and labels."""
    ids, mask = pad_right([b.input_ids for b in batch], pad_id)
    labels, _ = pad_right([b.labels for b in batch], IGNORE)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
