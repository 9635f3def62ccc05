"""Docs tables generated from a registry: the text between two markers of a docs page is written
by code and checked by the registry tests, so a page cannot drift from what is registered.

A generator module (``merge/doc_table.py``, ``train/doc_table.py``) says what its block holds and
calls ``main`` from its ``python -m`` entry point::

    python -m lorikit.train.doc_table docs/methods.md          # rewrite the block in place
    python -m lorikit.train.doc_table --check docs/methods.md  # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with everything from ``begin`` to ``end`` (markers included) replaced by ``block``
    (ValueError when the markers are missing)."""
    if begin not in text or end not in text:
        raise ValueError(f"markers {begin} / {end} not found")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def main(argv: list[str] | None, description: str, rewrite: Callable[[str], str], what: str, module: str) -> int:
    """The generator's command line: rewrite the page named by ``argv``, or ``--check`` it."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("doc", help="the docs page holding the block")
    ap.add_argument("--check", action="store_true", help="exit 1 if the tables are out of date")
    args = ap.parse_args(argv)
    path = Path(args.doc)
    text = path.read_text()
    new = rewrite(text)
    if args.check:
        if new != text:
            print(f"{path}: {what} are out of date; run python -m {module} {path}")
            return 1
        return 0
    path.write_text(new)
    return 0


def cell(text: object) -> str:
    """``text`` as one markdown table cell (its pipes escaped)."""
    return str(text).replace("|", "\\|")
