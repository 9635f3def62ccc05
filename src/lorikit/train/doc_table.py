"""The table of what a run can train with — adapter methods and initialisations of A — in
docs/methods.md, generated from their registries (name, what trains, summary, the name papers use
and the reference). It lives here, with the training config, because that is where every init is
registered (OSRM's registers from ``osrm/``, a floor above ``adapters/``).

    python -m lorikit.train.doc_table docs/methods.md      # rewrite the table in place
    python -m lorikit.train.doc_table --check docs/methods.md

The table sits between ``<!-- adapter-registry:begin -->`` and ``<!-- adapter-registry:end -->``;
tests/test_registries.py fails when it is out of date.
"""

from __future__ import annotations

import sys

from ..adapters.inits import INITS
from ..adapters.methods import METHODS
from ..utils import doc_block
from ..utils.doc_block import cell as _cell, replace_block
from ..utils.registry import reference
from . import config  # noqa: F401 (registers every init, OSRM's included, before INITS is read)

BEGIN, END = "<!-- adapter-registry:begin -->", "<!-- adapter-registry:end -->"


def generated() -> str:
    rows = ["| name | what | trains | summary | paper |", "|---|---|---|---|---|"]
    for name, m in METHODS.items():
        trains = "B (mask entries)" if m.uses_mask else "B" if m.freezes_a else "A and B"
        rows.append(f"| `--method {name}` | adapter method | {trains} | {_cell(m.summary)} | {_cell(reference(m))} |")
    for name, init in INITS.items():
        kind = "seeded init of A (`--a-init`)" if init.seeded else "data-driven init of A (`--init`)"
        rows.append(f"| `{name}` | {kind} | — | {_cell(init.summary)} | {_cell(reference(init))} |")
    return f"{BEGIN}\n" + "\n".join(rows) + f"\n{END}"


def rewrite(text: str) -> str:
    """``text`` with the generated table replaced (ValueError when the markers are missing)."""
    return replace_block(text, BEGIN, END, generated())


def main(argv: list[str] | None = None) -> int:
    return doc_block.main(argv, __doc__, rewrite, "adapter method tables", "lorikit.train.doc_table")


if __name__ == "__main__":
    sys.exit(main())
