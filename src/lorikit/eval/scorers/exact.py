"""Exact match (the built-in ``reverse`` task and other string transformations).

    correct = response.strip() == gold.strip()

Only surrounding whitespace is forgiven; case, inner spacing and punctuation must match.
"""

from __future__ import annotations


def extract(response: str) -> str:
    return response.strip()


def is_correct(prediction: str | None, gold: str | None) -> bool:
    return prediction is not None and gold is not None and prediction == str(gold).strip()
