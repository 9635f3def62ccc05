"""The method and parameter tables of docs/merge.md, generated from the merge registry.

    python -m lorikit.merge.doc_table docs/merge.md      # rewrite the tables in place
    python -m lorikit.merge.doc_table --check docs/merge.md

The tables sit between ``<!-- merge-registry:begin -->`` and ``<!-- merge-registry:end -->``;
tests/test_merge_registry.py fails when they are out of date.
"""

from __future__ import annotations

import sys

from ..utils import doc_block
from ..utils.doc_block import cell as _cell, replace_block
from ..utils.registry import reference
from .registry import all_params, methods

BEGIN, END = "<!-- merge-registry:begin -->", "<!-- merge-registry:end -->"


def method_table() -> str:
    rows = ["| method | kind | also accepted as | options | formula | paper |", "|---|---|---|---|---|---|"]
    for name, m in methods().items():
        options = [p.flag for p in m.params] + [f"--{a.replace('_', '-')}" for a in m.param_aliases]
        options = list(dict.fromkeys(options))
        if m.inner:
            options.append("+ the inner method's options")
        aliases = ", ".join(f"`{a}`" for a in m.aliases) or "—"
        rows.append(f"| `{name}` | {m.kind} | {aliases} | {', '.join(f'`{o}`' for o in options) or '—'} | "
                    f"{_cell(m.summary)} | {_cell(reference(m))} |")
    return "\n".join(rows)


def param_table() -> str:
    readers: dict[str, list[str]] = {}
    for name, m in methods().items():
        for p in m.params:
            readers.setdefault(p.name, []).append(name)
        for alias, (target, _) in m.param_aliases.items():
            readers.setdefault(alias, []).append(f"{name} (as 1 − {target})")
    rows = ["| option | YAML key | type | default | range | read by | meaning |", "|---|---|---|---|---|---|---|"]
    for p in all_params().values():
        keys = ", ".join(f"`{k}`" for k in (p.name, *p.aliases))
        rows.append(f"| `{p.flag}` | {keys} | {p.type.__name__} | {p.default_text} | {p.range_text()} | "
                    f"{', '.join(readers[p.name])} | {_cell(p.help)} |")
    return "\n".join(rows)


def generated() -> str:
    return f"{BEGIN}\n{method_table()}\n\n{param_table()}\n{END}"


def rewrite(text: str) -> str:
    """``text`` with the generated block replaced (ValueError when the markers are missing)."""
    return replace_block(text, BEGIN, END, generated())


def main(argv: list[str] | None = None) -> int:
    return doc_block.main(argv, __doc__, rewrite, "merge method tables", "lorikit.merge.doc_table")


if __name__ == "__main__":
    sys.exit(main())
