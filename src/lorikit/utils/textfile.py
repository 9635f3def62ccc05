"""Read a user's text file with the one-line errors every command gives (folder, missing, unreadable)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LorikitError, UsageError


def read_text(path: str | Path, source: str, missing: str = "no such file", expected: str = "a file") -> str:
    """The UTF-8 text of ``path``; ``source`` names it in errors (``--data rows.jsonl``), ``missing``
    says what a missing path is, ``expected`` what to give instead of a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{source}: is a folder (give {expected})")
    if not path.is_file():
        raise UsageError(f"{source}: {missing}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LorikitError(f"{source}: cannot read ({exc})") from exc
