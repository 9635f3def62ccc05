"""Prompt templates: the reference protocols' (docs/methods.md#evaluation) and the model's chat template.

``--template reference`` (the default, reference-compatible) uses the row format's own template:
Alpaca for instruction rows, the GSM8K prompt for maths. ``--template chat`` puts the row's user
message (the instruction and input, or the GSM8K question and its instruction, without the Alpaca
wrapper) into the tokenizer's chat template, ``apply_chat_template(..., add_generation_prompt=True)``,
as an Instruct model was tuned to read it; the response follows the opened assistant turn and ends
with the tokenizer's EOS (``<|im_end|>`` for SmolLM2-Instruct), so training and evaluation agree.

The reference indents the continuation lines of its prompts (a stray artefact of Python
triple-quoted strings); lorikit does not copy that defect.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from ..errors import UsageError

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
GSM8K = "{question}\nAnswer the above question. First think step by step and then answer the final number.\n"
RESPONSE_MARKER = "### Response:"
FINAL_ANSWER = "The final answer is:"


def alpaca_prompt(instruction: str, input: str | None = None) -> str:
    if input and input.strip():
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def gsm8k_prompt(question: str) -> str:
    return GSM8K.format(question=question)


def alpaca_user(instruction: str, input: str | None = None) -> str:
    """What the Alpaca template wraps, as one user message: the instruction, then the input."""
    return f"{instruction}\n\n{input}" if input and input.strip() else instruction


def chat_prompt(tokenizer: Any, user: str) -> str:
    """``user`` as the first user turn of the tokenizer's chat template, the assistant's turn opened."""
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(f"--template chat: the tokenizer {getattr(tokenizer, 'name_or_path', '') or '(built in code)'} "
                         "has no chat template (use --template reference)")
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)
    return without_bos(tokenizer, text)


def without_bos(tokenizer: Any, text: str) -> str:
    """``text`` without the template's BOS when the tokenizer adds BOS itself on encoding (two would
    shift every position)."""
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("", add_special_tokens=True).input_ids[:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text


TEMPLATES: dict[str, Callable[[Any, str, str], str]] = {
    "reference": lambda tokenizer, prompt, user: prompt,
    "chat": lambda tokenizer, prompt, user: chat_prompt(tokenizer, user),
}


def apply_template(template: str, tokenizer: Any, items: list) -> list:
    """``items`` (training ``Example``s or evaluation ``Item``s: ``prompt`` and ``user``) with their
    prompt rendered by ``template``; the reference template returns them unchanged."""
    if template not in TEMPLATES:
        raise UsageError(f"--template {template!r}: unknown (choose from {', '.join(TEMPLATES)})")
    # a conversation is always in the chat template (its prompt: the turns before the last reply)
    items = [replace(it, prompt=conversation_prompt(tokenizer, it.messages)) if getattr(it, "messages", None)
             else it for it in items]
    if template == "reference":
        return items
    render = TEMPLATES[template]
    return [it if getattr(it, "raw", False) or getattr(it, "messages", None) else
            replace(it, prompt=render(tokenizer, it.prompt, it.user if it.user is not None else it.prompt))
            for it in items]


def conversation_prompt(tokenizer: Any, messages: list[dict]) -> str:
    """The turns before the last assistant reply in the chat template, the assistant's turn opened."""
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(f"--format messages: the tokenizer {getattr(tokenizer, 'name_or_path', '') or '(built in code)'} "
                         "has no chat template")
    last = max(i for i, t in enumerate(messages) if t["role"] == "assistant")
    return without_bos(tokenizer, tokenizer.apply_chat_template(messages[:last], tokenize=False,
                                                                add_generation_prompt=True))
