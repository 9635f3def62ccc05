"""``--task nlu``: commonsense_170k choice questions (BoolQ, ARC, OpenBookQA, PIQA, ...).

Rows: ``instruction``, ``answer`` [, ``input``, ``output``, ``options``]. Prompt: Alpaca.
Score (``--scoring generate``): accuracy of ``lorikit.eval.scorers.nlu`` (the first answer token
of the gold's family after the response marker); 32 new tokens. ``--scoring loglik``: the most
likely option (options and answer prefix: ``lorikit.eval.choice``).
"""

from __future__ import annotations

from ...data.formats import text_field
from ..choice import answer_prefix, row_options
from ..scorers import nlu
from .base import CHOICE, Item, TaskSpec, alpaca_from_row, register, score_answers


def to_item(row: dict, where: str) -> Item:
    gold = text_field(row, "answer", where).strip()
    return Item(alpaca_from_row(row, where), gold, options=row_options(row, where, nlu=True),
                prefix=answer_prefix(row, gold, nlu=True))


def score(items, completions, cfg, context=None, progress=True):
    return score_answers(nlu.extract, nlu.is_correct, items, completions)


SPEC = register(TaskSpec("nlu", "accuracy of the first answer token (true/false, answerN, ...)",
                         (("instruction", "answer"),), to_item, max_new_tokens=32, scorings=CHOICE, score=score))
