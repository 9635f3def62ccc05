"""Row formats: turn a raw data row into a prompt/response pair.

- ``alpaca``: ``instruction``, optional ``input``, ``output`` → Alpaca template.
- ``gsm8k``: ``question``, ``answer`` ending in ``#### N`` → GSM8K prompt; the target's
  ``#### N`` becomes ``The final answer is: N`` (the reference's convention).
- ``nlu``: commonsense_170k — ``instruction``, ``output`` ("the correct answer is X"), ``answer``.
- TRL's dataset formats (``SFTTrainer``'s):
  - ``messages``: a conversation, ``[{"role": ..., "content": ...}, ...]``, rendered with the
    tokenizer's chat template; the loss is on the assistant turns only;
  - ``prompt-completion``: ``prompt`` and ``completion`` (text, or lists of messages: the
    conversational form); the loss is on the completion;
  - ``text``: plain text (language modelling); the loss is on every token.
- ``auto``: chosen from the first row's fields (question+answer → gsm8k, instruction+output+answer
  → nlu, instruction+output → alpaca, messages → messages, prompt+completion → prompt-completion,
  text → text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import LorikitError, UsageError
from .templates import FINAL_ANSWER, alpaca_prompt, alpaca_user, gsm8k_prompt

FORMATS = ("auto", "alpaca", "gsm8k", "nlu", "messages", "prompt-completion", "text")
_GSM_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


@dataclass
class Example:
    prompt: str
    response: str
    answer: str | None = None  # gold answer for scoring, when the format has one
    meta: dict[str, Any] = field(default_factory=dict)
    user: str | None = None  # the prompt's content without the format's wrapper (for --template chat)
    messages: list[dict[str, str]] | None = None  # a conversation: tokenised through the chat template
    train_from: int = 0  # messages: the first turn whose assistant replies carry loss (after a prompt)
    raw: bool = False  # the prompt is final (text rows, conversations): no --template applies


def detect_format(row: dict[str, Any], where: str) -> str:
    keys = set(row)
    if {"question", "answer"} <= keys:
        return "gsm8k"
    if {"instruction", "output", "answer"} <= keys:
        return "nlu"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "messages" in keys:
        return "messages"
    if {"prompt", "completion"} <= keys:
        return "prompt-completion"
    if "text" in keys:
        return "text"
    raise LorikitError(f"{where}: cannot detect the format from fields {sorted(keys)} "
                       f"(pass --format {'|'.join(FORMATS[1:])})")


def gsm8k_target(answer: str) -> tuple[str, str]:
    """(response with 'The final answer is: N', N) from a GSM8K answer ending in '#### N'."""
    m = _GSM_FINAL.search(answer)
    if not m:
        raise ValueError("answer has no '#### N' final line")
    final = m.group(1).strip().replace(",", "")
    if not final:  # '#### ' with nothing after it: a target without an answer teaches nothing
        raise ValueError("final line '####' has no answer after it")
    body = answer[: m.start()].rstrip()
    return (f"{body}\n{FINAL_ANSWER} {final}" if body else f"{FINAL_ANSWER} {final}"), final


def text_field(row: dict[str, Any], key: str, where: str) -> str:
    """``row[key]`` as text; a missing or non-scalar field is an error naming ``where`` and the key."""
    value = row.get(key)
    if value is None:
        raise LorikitError(f"{where}: missing field {key!r}")
    if not isinstance(value, (str, int, float)):
        raise LorikitError(f"{where}: field {key!r} is {type(value).__name__}, expected text")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800" from a JSON escape
        raise LorikitError(f"{where}: field {key!r} is not valid text (lone surrogate "
                           f"{text[exc.start]!r} at position {exc.start})") from None
    return text


def _alpaca(row, where):
    inp = row.get("input")
    inp = text_field(row, "input", where) if inp is not None else None
    instruction = text_field(row, "instruction", where)
    return Example(alpaca_prompt(instruction, inp), text_field(row, "output", where), user=alpaca_user(instruction, inp))


def _gsm8k(row, where):
    try:
        response, final = gsm8k_target(text_field(row, "answer", where))
    except ValueError as exc:
        raise LorikitError(f"{where}: field 'answer': {exc}") from exc
    prompt = gsm8k_prompt(text_field(row, "question", where))
    return Example(prompt, response, answer=final, user=prompt.strip())


def _nlu(row, where):
    inp = text_field(row, "input", where) if row.get("input") is not None else None
    instruction = text_field(row, "instruction", where)
    return Example(alpaca_prompt(instruction, inp), text_field(row, "output", where),
                   answer=text_field(row, "answer", where).strip(), user=alpaca_user(instruction, inp))


def conversation(value: Any, where: str, key: str) -> list[dict[str, str]]:
    """A list of ``{"role", "content"}`` turns (TRL's conversational form), checked."""
    if not isinstance(value, list) or not value:
        raise LorikitError(f"{where}: field {key!r} must be a non-empty list of {{role, content}} messages")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str):
            raise LorikitError(f"{where}: {key}[{i}] must be an object with a 'role' and a 'content'")
        turns.append({"role": turn["role"], "content": text_field(turn, "content", f"{where}: {key}[{i}]")})
    return turns


def _messages(row, where):
    turns = conversation(row.get("messages"), where, "messages")
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        raise LorikitError(f"{where}: field 'messages' has no assistant turn (nothing to train on)")
    user = next((t["content"] for t in reversed(turns[:last]) if t["role"] == "user"), None)
    return Example("", turns[last]["content"], user=user, messages=turns, raw=True)


def _prompt_completion(row, where):
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):  # conversational prompt-completion
        head, tail = conversation(prompt, where, "prompt"), conversation(completion, where, "completion")
        if not any(t["role"] == "assistant" for t in tail):
            raise LorikitError(f"{where}: field 'completion' has no assistant turn")
        user = next((t["content"] for t in reversed(head) if t["role"] == "user"), None)
        reply = next(t["content"] for t in tail if t["role"] == "assistant")
        return Example("", reply, user=user, messages=head + tail, train_from=len(head), raw=True)
    text = text_field(row, "prompt", where)
    return Example(text, text_field(row, "completion", where), user=text)


def _text(row, where):
    return Example("", text_field(row, "text", where), raw=True)


CONVERTERS: dict[str, Callable[[dict[str, Any], str], Example]] = {
    "alpaca": _alpaca, "gsm8k": _gsm8k, "nlu": _nlu, "messages": _messages,
    "prompt-completion": _prompt_completion, "text": _text}


def to_example(row: Any, fmt: str, where: str) -> Example:
    if not isinstance(row, dict):
        raise LorikitError(f"{where}: row is {type(row).__name__}, expected a JSON object")
    if fmt not in CONVERTERS:
        raise UsageError(f"--format {fmt!r}: unknown (choose from {', '.join(FORMATS)})")
    ex = CONVERTERS[fmt](row, where)
    ex.meta = {k: v for k, v in row.items() if k in ("task", "id", "task_id")}
    return ex
