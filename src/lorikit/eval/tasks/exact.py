"""``--task exact``: exact match of the response (string transformations, short answers).

Rows: ``instruction``, ``output`` [, ``input``, ``options``] (prompt: Alpaca), or TRL's formats:
``prompt`` / ``completion`` (the prompt as it is; with ``--template chat`` as the user turn) and
``messages`` (the turns before the last assistant reply in the chat template; gold: that reply). Score: exact match
after stripping surrounding whitespace (``lorikit.eval.scorers.exact``); 64 new tokens, stop at
the first newline. Rows with ``options`` (e.g. built-in ``pair-max``) can be scored by
``--scoring loglik`` (the most likely option).
"""

from __future__ import annotations

from ...data.formats import text_field, to_example
from ..choice import row_options
from ..scorers import exact
from .base import CHOICE, Item, TaskSpec, alpaca_from_row, register, score_answers


def to_item(row: dict, where: str) -> Item:
    if "messages" in row or ("prompt" in row and "completion" in row):
        ex = to_example(row, "messages" if "messages" in row else "prompt-completion", where)
        if ex.messages is not None:
            return Item("", ex.response, user=ex.user, messages=ex.messages)
        return Item(ex.prompt, ex.response, user=ex.prompt, options=row_options(row, where, nlu=False))
    return Item(alpaca_from_row(row, where), text_field(row, "output", where), options=row_options(row, where, nlu=False))


def score(items, completions, cfg, context=None, progress=True):
    return score_answers(lambda text, gold: exact.extract(text), exact.is_correct, items, completions)


SPEC = register(TaskSpec("exact", "exact match after strip", (("instruction", "output"), ("prompt", "completion"),
                                                               ("messages",)), to_item,
                         max_new_tokens=64, stop=("\n",), scorings=CHOICE, score=score))
