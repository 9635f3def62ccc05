"""Tokenise prompt/response pairs for supervised fine-tuning on the response only (+ EOS)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LorikitError, UsageError

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


def tokenize(tok, example, max_length: int = 512, max_prompt_length: int | None = 256) -> TokenizedExample:
    """An ``Example`` of any format: a conversation through the chat template (loss on the assistant
    turns), else prompt + response (a text row has an empty prompt: loss on every token)."""
    if example.messages is not None:
        return tokenize_conversation(tok, example.messages, max_length, example.train_from)
    return tokenize_example(tok, example.prompt, example.response, max_length, max_prompt_length)


def _render(tok, messages: list[dict], generation_prompt: bool = False) -> str:
    if not messages:
        return ""
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tok, messages: list[dict], train_from: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """(the conversation in the chat template, the character spans of its assistant replies from turn
    ``train_from`` on). A reply's span runs from the end of the template's assistant header (the
    conversation before it rendered with the generation prompt) to the end of that turn, end-of-turn
    token included, trailing whitespace excluded — what a ``{% generation %}`` block would mark, for
    templates without one."""
    if not getattr(tok, "chat_template", None):
        raise UsageError(f"--format messages: the tokenizer {getattr(tok, 'name_or_path', '') or '(built in code)'} "
                         "has no chat template")
    text = _render(tok, messages)
    spans = []
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant" or i < train_from:
            continue
        head, upto = _render(tok, messages[:i], generation_prompt=True), _render(tok, messages[:i + 1])
        if not (text.startswith(upto) and upto.startswith(head)):
            raise LorikitError("--format messages: the tokenizer's chat template does not render a conversation "
                               "turn by turn (a prefix changes when turns are added); cannot find the assistant "
                               "turns to train on")
        spans.append((len(head), len(upto.rstrip())))
    return text, spans


def tokenize_conversation(tok, messages: list[dict], max_length: int = 512, train_from: int = 0) -> TokenizedExample:
    """The chat-template rendering of ``messages`` (its own special tokens, none added), labels on the
    tokens that start inside an assistant reply; truncated on the right at ``max_length``."""
    text, spans = assistant_spans(tok, messages, train_from)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc.input_ids[:max_length]
    labels = [t if any(a <= start < b for a, b in spans) and end > start else IGNORE
              for t, (start, end) in zip(ids, enc.offset_mapping)]
    return TokenizedExample(list(ids), labels)


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
