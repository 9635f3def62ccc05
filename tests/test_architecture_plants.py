"""The architecture check, checked: plant one violation of each kind in a scratch copy of ``src/``
and count how many the rules catch. ``python tests/test_architecture_plants.py`` prints the table.

The first seven are the classic breaches; the other eleven hide from a check that reads only
``from x import y`` edges and looks for cycles: an upward import with no cycle, a cycle closed only
through a parent package's ``__init__``, ``importlib.import_module``, a second print in a file
allowed one, ``builtins.print``, ``sys.stdout.write``, a method name through a named constant,
``startswith``, a dict key or an f-string, and a private name reached as ``module._name``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import archcheck
from lorikit.adapters.methods import method_names

ROOT = Path(__file__).resolve().parents[1]
FILLER = "".join(f"    x{i} = {i}\n" for i in range(62))

# (what, rule that must catch it, file under src/lorikit, code appended to the file)
PLANTS: list[tuple[str, str, str, str]] = [
    ("module-level import cycle", "cycle", "errors.py", "from .utils import atomic\n"),
    ("cycle through a function-level import", "cycle", "data/formats.py",
     "def planted():\n    from .loading import load_rows\n"),
    ("private name imported", "private", "eval/choice.py", "from ..adapters.masks import _topk_mask\n"),
    ("file over 400 lines", "size", "utils/settings.py", "PLANTED = 0\n" * 400),
    ("function over 60 lines", "size", "data/templates.py", "def planted():\n" + FILLER),
    ("method name compared with ==", "method name", "train/loss.py",
     "def planted(cfg):\n    return cfg.method == 'lori-s'\n"),
    ("print in library code", "print", "data/loading.py", "def planted():\n    print('hello')\n"),
    ("upward import, no cycle", "floor", "data/tokenize.py",
     "def planted():\n    from ..search.plot import plot_search\n"),
    ("function-level import closing a cycle through a parent __init__", "cycle", "adapters/inits/gaussian.py",
     "def planted():\n    from ..methods.plans import DensePlan\n"),
    ("importlib.import_module of a higher module", "floor", "models/heads.py",
     "def planted():\n    import importlib\n    return importlib.import_module('lorikit.eval.scorers.exact')\n"),
    ("second print in a file allowed one", "print", "merge/doc_table.py", "def planted():\n    print('again')\n"),
    ("builtins.print", "print", "data/builtin.py", "import builtins\n\n\ndef planted():\n    builtins.print('x')\n"),
    ("sys.stdout.write", "print", "utils/validate.py", "import sys\n\n\ndef planted():\n    sys.stdout.write('x')\n"),
    ("method name through a named constant", "method name", "train/reporting.py",
     "DENSE = 'lori-d'\n\n\ndef planted(m):\n    return m == DENSE\n"),
    ("method name through startswith", "method name", "merge/ops.py",
     "def planted(m):\n    return m.startswith('lori')\n"),
    ("method name as a dict key", "method name", "eval/result.py",
     "def planted(m):\n    return {'lori-s': 0.9, 'lora': 0.0}[m]\n"),
    ("method name in an f-string", "method name", "pipeline/kinds/train.py",
     "def planted(variant):\n    return f'lori-{variant}'\n"),
    ("private name reached as module._name", "private", "osrm/reader.py",
     "def planted(m):\n    from ..adapters import masks\n    return masks._topk_mask(m, 1)\n"),
]


def plant_and_check(scratch: Path) -> list[tuple[str, str, bool, list[str]]]:
    """Copy src/ into ``scratch``, plant every violation, and say for each whether it was caught."""
    src = scratch / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    names = set(method_names())
    before = {(f.rule, f.key) for f in archcheck.findings(src, names)}
    for _, _, rel, code in PLANTS:
        path = src / "lorikit" / rel
        path.write_text(path.read_text().rstrip("\n") + "\n\n\n" + code)
    after = archcheck.findings(src, names)
    results = []
    for what, rule, rel, _ in PLANTS:
        hits = [str(f) for f in after if f.rule == rule and (f.rule, f.key) not in before
                and (f.file == f"lorikit/{rel}" or f"lorikit.{rel[:-3].replace('/', '.')}" in f.text)]
        results.append((what, rule, bool(hits), hits))
    return results


def test_every_planted_violation_is_caught(tmp_path):
    results = plant_and_check(tmp_path)
    missed = [what for what, _, caught, _ in results if not caught]
    assert len(results) == 18 and not missed, missed


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = plant_and_check(Path(tmp))
    for what, rule, caught, hits in rows:
        print(f"{'caught' if caught else 'MISSED':7} {rule:12} {what}")
        for hit in hits[:2]:
            print(f"        {hit}")
    print(f"caught {sum(c for _, _, c, _ in rows)} of {len(rows)}")
    sys.exit(0 if all(c for _, _, c, _ in rows) else 1)
