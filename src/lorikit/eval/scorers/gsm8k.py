"""GSM8K answer extraction (docs/methods.md#evaluation).

    prediction = first number after "The final answer is:" if the response has the marker and a
                 number follows it, else the last number anywhere in the response
    correct    = |prediction - gold| < 1e-6

Numbers may carry a sign ("-12", "−12") and thousands separators ("1,234"); a comma is removed only
inside a digit group, so "3, 4" stays two numbers (the reference deleted every comma first, turning
such lists into "34"). A trailing sentence period is not part of the number ("is: 18." → 18).
"""

from __future__ import annotations

import re

from ...data.templates import FINAL_ANSWER

# A sign counts only when it does not follow a word character: "5-3" is 5 and 3, not 5 and -3.
_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-−]?\d+(?:\.\d+)?|\d+(?:\.\d+)?")
_MARKER = re.compile(re.escape(FINAL_ANSWER.rstrip(":")) + r"\s*:?", re.I)


def _normalise(token: str) -> str:
    token = token.replace(",", "").replace("−", "-")
    if "." in token:
        token = token.rstrip("0").rstrip(".")
    return token or "0"


def numbers(text: str) -> list[str]:
    """Every number in ``text``, normalised ("-1,234.50" → "-1234.5")."""
    return [_normalise(m.group(0)) for m in _NUMBER.finditer(text)]


def extract(response: str) -> str | None:
    marker = _MARKER.search(response)
    if marker:
        after = numbers(response[marker.end():])
        if after:
            return after[0]
    found = numbers(response)
    return found[-1] if found else None


def is_correct(prediction: str | None, gold: str | None) -> bool:
    if prediction is None or gold is None:
        return False
    gold_numbers = numbers(str(gold))
    if not gold_numbers:
        return False
    try:
        return abs(float(prediction) - float(gold_numbers[0])) < 1e-6
    except ValueError:
        return False
