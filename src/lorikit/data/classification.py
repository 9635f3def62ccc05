"""Classification rows (GLUE-like): the one reader of their text fields, for training and evaluation.

A row carries one or two text fields and a label. The fields are given explicitly
(``--text-fields``) or detected, the first of these sets the row holds wins:

    sentence1/sentence2, question1/question2, premise/hypothesis, question/sentence,
    question/passage, sentence1, sentence, text
"""

from __future__ import annotations

from ..errors import LorikitError

TEXT_FIELD_SETS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                   ("question", "sentence"), ("question", "passage"), ("sentence1",), ("sentence",), ("text",))


def _present(row: dict, name: str) -> bool:
    return row.get(name) is not None


def detect_text_fields(row: dict, where: str, explicit: list[str] | tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The text fields of ``row``: ``explicit`` (checked) or the first set of TEXT_FIELD_SETS it holds."""
    if not isinstance(row, dict):
        raise LorikitError(f"{where}: row is {type(row).__name__}, expected a JSON object")
    if explicit:
        missing = [f for f in explicit if not _present(row, f)]
        if missing:
            raise LorikitError(f"{where}: --text-fields {', '.join(missing)} not in the row (fields: {sorted(row)})")
        return tuple(explicit)
    for fields in TEXT_FIELD_SETS:
        if all(_present(row, f) for f in fields):
            return fields
    raise LorikitError(f"{where}: classification rows need text fields (one of "
                       f"{', '.join('/'.join(f) for f in TEXT_FIELD_SETS)}, or --text-fields); the row has {sorted(row)}")


def row_text(row: dict, where: str, fields: tuple[str, ...] | None = None) -> tuple[str, str | None]:
    """(first text, second text or None) of a row, from ``fields`` (default: detected for this row)."""
    fields = fields or detect_text_fields(row, where)
    missing = [f for f in fields if not _present(row, f)]
    if missing:
        raise LorikitError(f"{where}: missing field {missing[0]!r} (the data's text fields are {', '.join(fields)})")
    texts = [str(row[f]) for f in fields]
    return texts[0], texts[1] if len(texts) > 1 else None
