"""``--task gsm8k``: grade-school maths, answer = the final number.

Rows: ``question``, ``answer`` (``... #### N`` or a single number). Prompt: the GSM8K template.
Score: accuracy of ``lorikit.eval.scorers.gsm8k`` (first number after "The final answer is:",
else the last number). Generation: 256 new tokens.
"""

from __future__ import annotations

from ...data.formats import gsm8k_target, text_field
from ...data.templates import gsm8k_prompt
from ...errors import LorikitError
from ..scorers import gsm8k
from .base import Item, TaskSpec, register, score_answers


def to_item(row: dict, where: str) -> Item:
    answer = text_field(row, "answer", where)
    numbers = gsm8k.numbers(answer)
    if "####" in answer:
        try:
            gold = gsm8k_target(answer)[1]
        except ValueError as exc:
            raise LorikitError(f"{where}: field 'answer': {exc}") from exc
    elif len(numbers) == 1:
        gold = numbers[0]
    else:
        raise LorikitError(f"{where}: field 'answer' is neither '... #### N' nor a single number")
    return Item(gsm8k_prompt(text_field(row, "question", where)), gold)


def score(items, completions, cfg, context=None, progress=True):
    return score_answers(lambda text, gold: gsm8k.extract(text), gsm8k.is_correct, items, completions)


SPEC = register(TaskSpec("gsm8k", "accuracy of the final number", (("question", "answer"),), to_item,
                         max_new_tokens=256, score=score))
