"""Choice items: where their options come from, and scoring by option log-likelihood.

Options of a row, first match wins:

1. an ``options`` field (a list of strings), e.g. the built-in ``pair-max`` rows;
2. NLU rows: the ``Answer format: a/b/c`` line of the instruction (commonsense_170k lists the
   options there: ``true/false``, ``answer1/answer2/...``, ``solution1/solution2``, ...);
3. NLU rows whose gold answer is ``true``/``false``: those two.

The continuation scored for option o is ``prefix + o``; the prefix is the part of the row's
``output`` before its answer (``"the correct answer is "`` in commonsense_170k rows, ``""`` when
the output is the bare answer), and ``"the correct answer is "`` for NLU rows without ``output``.

``--scoring both`` runs generation and log-likelihood on the same items and reports the
agreement rate on the items whose generated answer is well-formed (one of the options):

    agreement = #{well-formed, generated == loglik prediction} / #{well-formed}
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import LorikitError

if TYPE_CHECKING:  # loglik needs torch; the task registry imports this module for --help
    from .loglik import ChoiceItem

NLU_PREFIX = "the correct answer is "
_FORMAT_LINE = re.compile(r"Answer format:\s*(\S+(?:/\S+)+)\s*$", re.M)


def row_options(row: dict, where: str, nlu: bool) -> list[str] | None:
    """The options of a row (see the module docstring), or None when it names none."""
    value = row.get("options")
    if value is not None:
        if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, (str, int)) for v in value):
            raise LorikitError(f"{where}: field 'options' must be a list of at least two strings")
        return [str(v) for v in value]
    if not nlu:
        return None
    m = _FORMAT_LINE.search(str(row.get("instruction", "")))
    if m:
        return m.group(1).split("/")
    gold = str(row.get("answer", "")).strip().lower()
    return ["true", "false"] if gold in ("true", "false") else None


def answer_prefix(row: dict, gold: str | None, nlu: bool) -> str:
    """What the response says before the answer: the row's ``output`` up to its answer."""
    output = row.get("output")
    if isinstance(output, str) and gold and output.strip().lower().endswith(gold.strip().lower()):
        return output.strip()[: len(output.strip()) - len(gold.strip())]
    return NLU_PREFIX if nlu else ""


def choice_items(items, task: str) -> list[ChoiceItem]:
    """The log-likelihood requests of ``items`` (``Item`` objects with ``options``); errors name the row."""
    from .loglik import ChoiceItem

    out = []
    for item in items:
        if not item.options:
            raise LorikitError(f"{item.where}: --scoring loglik needs the row's options (an 'options' list, or an "
                               f"'Answer format: a/b' line for NLU rows); --task {task} has none here")
        if item.gold is not None and normalise(item.gold) not in [normalise(o) for o in item.options]:
            raise LorikitError(f"{item.where}: gold answer {item.gold!r} is not one of the options {item.options}")
        out.append(ChoiceItem(item.prompt, [item.prefix + o for o in item.options]))
    return out


def normalise(text: str) -> str:
    return str(text).strip().lower()


def score_loglik(items, logliks: list[list[float]]) -> tuple[dict[str, Any], list[dict]]:
    """Accuracy of the most likely option; one record per item with every option's log-likelihood."""
    from .loglik import choose

    records = []
    for item, scores in zip(items, logliks):
        pred = item.options[choose(scores)]
        records.append({"id": item.id, "prompt": item.prompt, "response": item.prefix + pred, "extracted": pred,
                        "gold": item.gold, "correct": normalise(pred) == normalise(item.gold),
                        "scoring": "loglik", "logliks": dict(zip(item.options, [round(s, 4) for s in scores]))})
    correct = sum(r["correct"] for r in records)
    accuracy = correct / len(records)
    return {"metric": "accuracy", "score": accuracy, "accuracy": accuracy, "correct": correct}, records


def merge_both(gen: tuple[dict, list[dict]], ll: tuple[dict, list[dict]], items) -> tuple[dict, list[dict]]:
    """Generation's result (the headline score) plus the log-likelihood prediction per item and the
    agreement rate on items whose generated answer is one of the options."""
    (gen_metrics, gen_records), (ll_metrics, ll_records) = gen, ll
    agree = well_formed = 0
    for item, g, l in zip(items, gen_records, ll_records):
        ok = g["extracted"] is not None and normalise(g["extracted"]) in [normalise(o) for o in item.options]
        g.update(well_formed=ok, loglik_extracted=l["extracted"], loglik_correct=l["correct"], logliks=l["logliks"])
        well_formed += ok
        agree += ok and normalise(g["extracted"]) == normalise(l["extracted"])
    metrics = {**gen_metrics, "loglik_accuracy": ll_metrics["accuracy"], "loglik_correct": ll_metrics["correct"],
               "well_formed": well_formed, "agreement": agree / well_formed if well_formed else None}
    return metrics, gen_records
