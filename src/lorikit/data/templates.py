"""Prompt templates exactly as the reference protocols use them (docs/methods.md#evaluation).

The reference indents the continuation lines of its prompts (a stray artefact of Python
triple-quoted strings); lorikit does not copy that defect.
"""

from __future__ import annotations

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
