"""The house rules of the code base, read from the source (AST), not from a run (rules in archcheck.py):

- every module stands on a floor of ``archcheck.FLOORS`` and imports nothing from a higher floor —
  imports inside functions, ``importlib.import_module`` with a literal name and the package
  ``__init__`` an import runs included;
- no import cycle among modules, nor among whole packages;
- no private (``_name``) of another lorikit module, imported or reached as ``module._name``;
- no library file over 400 lines, no function over 60 lines;
- one method, one file: a method file (merge/methods/, adapters/methods/, inits/, eval/tasks/,
  pipeline/kinds/) imports no other method file (shared code lives in its own module);
- no mention of the internal spec file users do not have;
- only ``adapters/methods/`` tells adapter methods apart by name (ask the registry);
- library code logs: ``print``, ``builtins.print`` and ``sys.stdout`` / ``sys.stderr`` are ``cli/``'s.

``archcheck.KNOWN`` pins each breach that still stands to its line, with its owner; an entry that
no longer occurs fails, so the list only shrinks. docs/architecture.md's floor table is generated
from ``FLOORS`` and checked here. ``test_architecture_plants.py`` plants violations in a copy.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import archcheck
from lorikit.adapters.methods import method_names

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


@functools.lru_cache(maxsize=1)
def _findings() -> tuple[archcheck.Finding, ...]:
    return tuple(archcheck.findings(ROOT / "src", set(method_names())))


def _breaches(rule: str) -> list[str]:
    new, _ = archcheck.unexplained([f for f in _findings() if f.rule == rule])
    return [str(f) for f in new]


def test_every_module_is_on_a_floor_and_no_import_goes_up():
    assert not _breaches("floor")


def test_no_import_cycle_of_modules_or_packages():
    assert not _breaches("cycle")


def test_no_private_name_of_another_module():
    assert not _breaches("private")


def test_no_file_over_400_lines_and_no_function_over_60():
    assert not _breaches("size")


def test_method_files_never_import_each_other():
    assert not _breaches("sibling")


def test_library_code_logs_instead_of_printing():
    assert not _breaches("print")


def test_method_names_are_told_apart_only_inside_adapters_methods():
    assert not _breaches("method name")


def test_every_known_breach_still_occurs():
    _, gone = archcheck.unexplained(list(_findings()))
    assert not gone, f"fixed, remove from archcheck.KNOWN: {gone}"


def test_no_mention_of_a_spec_users_do_not_have():
    assert not archcheck.spec_mentions(ROOT)


def test_the_cycle_finder_finds_a_cycle():
    assert archcheck.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert archcheck.cycles({"a": {"b"}, "b": set()}) == []


def test_method_name_uses_are_recognised_in_every_form():
    code = '''
LORI = "lori-d"
KNOWN = ("lora", "lori-s")
if cfg.method == "lori-s" or m in ("lora", "x"):
    pass
if m == LORI or m in KNOWN:
    pass
if m.startswith("lori"):
    pass
weights = {"lori-s": 1}
w = table["lora"]
stage = f"masks-lori-s-s{seed}"
other = f"lori-{variant}"
prose = f"{path}: move it to <lori-d adapter>/masks/"
keys = f"{prefix}.lora_{which}"
default = {"method": "lora"}
'''
    lines = [line for line, _ in archcheck.method_name_uses(ast.parse(code), {"lora", "lori-d", "lori-s"})]
    assert sorted(set(lines)) == [4, 6, 8, 10, 11, 12, 13]


def test_the_import_reader_follows_importlib_and_parent_packages(tmp_path):
    pkg = tmp_path / "lorikit"
    for rel, text in {"__init__.py": "", "low/__init__.py": "", "low/a.py": "",
                      "high/__init__.py": "from . import b\n", "high/b.py": "", "high/sub/__init__.py": "",
                      "high/sub/c.py": "",
                      "low/dyn.py": "import importlib\ndef f(n):\n    importlib.import_module('lorikit.high.b')\n"
                                    "    importlib.import_module(f'lorikit.high.sub.{n}')\n",
                      "low/deep.py": "def f():\n    import lorikit.high.sub.c\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    edges = {(a, b) for a, b, _ in archcheck.Source(tmp_path).edges()}
    assert {("lorikit.low.dyn", "lorikit.high.b"), ("lorikit.low.dyn", "lorikit.high"),
            ("lorikit.low.dyn", "lorikit.high.sub.c"), ("lorikit.low.dyn", "lorikit.high.sub")} <= edges
    assert {("lorikit.low.deep", t) for t in ("lorikit.high", "lorikit.high.sub", "lorikit.high.sub.c")} <= edges
    assert ("lorikit.high.b", "lorikit.high") not in edges  # a module's own package is already running


def test_docs_floor_table_is_generated_from_floors():
    text = DOC.read_text()
    assert archcheck.BEGIN in text and archcheck.END in text
    assert archcheck.docs_with_table(text) == text, "run: python tests/archcheck.py --write"


def test_docs_describe_every_package():
    text = DOC.read_text()
    described = set(re.findall(r"\*\*(\w+)/?\*\*", text))
    top = {p.stem if p.is_file() else p.name for p in (ROOT / "src" / "lorikit").iterdir()
           if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert top - {"_version", "__main__"} <= described, sorted(top - described)
    for sub in (ROOT / "src" / "lorikit").glob("*/*/__init__.py"):
        assert f"{sub.parent.name}/" in text, f"docs/architecture.md: describe {sub.parent.relative_to(ROOT)}"


def test_a_method_file_importing_another_is_found(tmp_path):
    pkg = tmp_path / "lorikit" / "merge" / "methods"
    pkg.mkdir(parents=True)
    for rel in ("lorikit/__init__.py", "lorikit/merge/__init__.py", "lorikit/merge/methods/__init__.py",
                "lorikit/merge/methods/ties.py", "lorikit/merge/sparsify.py"):
        (tmp_path / rel).touch()
    (pkg / "dare.py").write_text("from ..sparsify import x\nfrom .ties import elect_and_merge\n")
    found = archcheck.sibling_findings(archcheck.Source(tmp_path))
    assert [(f.file, f.line) for f in found] == [("lorikit/merge/methods/dare.py", 2)]
