"""The file an eval stage writes, and its readers: the headline score and the per-item results.

``lorikit run``'s eval stages write ``<stage>/result.json``; the scores table and the merge-weight
sweep both read the score back from it. Paired comparisons (two adapters on the same test items)
read the per-item results: every record carries ``id`` (the row's ``id``/``task_id`` field, else
its 0-based position in the data), ``correct`` and the prediction (``extracted``). Files written
before records had ids get the record's position as id.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import LorikitError

RESULT = "result.json"


@dataclass(frozen=True)
class ItemResult:
    """One test item of an eval output."""

    id: str
    correct: int  # 1 or 0 (for several samples: the first sample's)
    prediction: str | None
    gold: str | None = None  # the reference answer, where the task has one (choice tasks, exact answers)


def _read(path: str | os.PathLike, prefix: str) -> tuple[Path, dict]:
    path = Path(path)
    if path.is_dir():
        path = path / RESULT
    if not path.is_file():
        raise LorikitError(f"{prefix}{path}: no such eval result (expected an eval folder or {RESULT})")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LorikitError(f"{prefix}{path}: not a JSON eval result ({e})") from None
    return path, record


def read_items(path: str | os.PathLike, where: str = "") -> list[ItemResult]:
    """Per-item results of an eval output (folder or file), in data order."""
    prefix = f"{where}: " if where else ""
    path, record = _read(path, prefix)
    records = record.get("records") if isinstance(record, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "correct" in r for r in records):
        raise LorikitError(f"{prefix}{path}: no per-item 'records' with 'correct' (an lm-eval or regression result?)")
    if any(r["correct"] is None for r in records):
        raise LorikitError(f"{prefix}{path}: records have no correct/incorrect verdict (regression?)")
    text = lambda v: None if v is None else str(v)  # noqa: E731
    return [ItemResult(str(r.get("id", i)), int(bool(r["correct"])), text(r.get("extracted")), text(r.get("gold")))
            for i, r in enumerate(records)]


def read_score(path: str | os.PathLike, where: str = "") -> float:
    """``score`` of an eval output: a folder holding ``result.json``, or that file itself.
    Errors name ``where`` (the setting that pointed here) and the file."""
    prefix = f"{where}: " if where else ""
    path, record = _read(path, prefix)
    raw = record.get("score") if isinstance(record, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise LorikitError(f"{prefix}{path}: no numeric 'score' field")
    return float(raw)
