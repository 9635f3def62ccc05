"""NLU answer extraction (commonsense_170k format, docs/methods.md#evaluation).

    text       = the part after the last "### Response:" marker when the text contains one
                 (a full prompt + response), else the whole response
    prediction = the first answer token in text: true|false, answerN, solutionN, optionN, endingN
                 (only tokens of the gold answer's family when the gold is known, as the reference
                 picks the token set by data set: BoolQ true/false, ARC/OBQA answerN, PIQA
                 solutionN, WinoGrande optionN, HellaSwag endingN)
    correct    = prediction == gold (case-insensitive)

Searching only after the marker matters: the prompt itself lists the options
("Answer format: answer1/answer2/...").
"""

from __future__ import annotations

import re

from ...data.templates import RESPONSE_MARKER

FAMILIES = {"boolean": r"true|false", "answer": r"answer\d+", "solution": r"solution\d+",
            "option": r"option\d+", "ending": r"ending\d+"}
_ANY = re.compile(r"\b(" + "|".join(FAMILIES.values()) + r")\b", re.I)


def family(gold: str | None) -> str | None:
    """The answer family of a gold label ("answer3" → "answer", "true" → "boolean")."""
    if gold is None:
        return None
    g = str(gold).strip().lower()
    for name, pattern in FAMILIES.items():
        if re.fullmatch(pattern, g):
            return name
    return None


def extract(response: str, gold: str | None = None) -> str | None:
    if RESPONSE_MARKER in response:
        response = response.rsplit(RESPONSE_MARKER, 1)[1]
    fam = family(gold)
    pattern = re.compile(r"\b(" + FAMILIES[fam] + r")\b", re.I) if fam else _ANY
    m = pattern.search(response)
    return m.group(1).lower() if m else None


def is_correct(prediction: str | None, gold: str | None) -> bool:
    return prediction is not None and gold is not None and prediction == str(gold).strip().lower()
