"""The file an eval stage writes, and the one reader of its headline score.

``lorikit run``'s eval stages write ``<stage>/result.json``; the scores table and the merge-weight
sweep both read the score back from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import LorikitError

RESULT = "result.json"


def read_score(path: str | os.PathLike, where: str = "") -> float:
    """``score`` of an eval output: a folder holding ``result.json``, or that file itself.
    Errors name ``where`` (the setting that pointed here) and the file."""
    prefix = f"{where}: " if where else ""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT
    if not path.is_file():
        raise LorikitError(f"{prefix}{path}: no such eval result (expected an eval folder or {RESULT})")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LorikitError(f"{prefix}{path}: not a JSON eval result ({e})") from None
    raw = record.get("score") if isinstance(record, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise LorikitError(f"{prefix}{path}: no numeric 'score' field")
    return float(raw)
