"""The house rules of the code base, read from the source (AST), not from a run:

- no import cycle among lorikit's modules — imports inside function bodies count too, so a cycle
  cannot hide behind a lazy import;
- no private (``_name``) imported from another lorikit module;
- no library file over 400 lines, no function over 60 lines (``src/lorikit``);
- no mention of the internal spec file users do not have in src, docs, recipes, tests, bench
  (docs/methods.md is the method reference);
- no adapter-method name compared as a string outside ``adapters/methods/`` (ask the registry);
- library code logs instead of printing (only ``cli/`` prints).

Where another helper's package still breaks a rule, ``KNOWN`` lists it explicitly with its owner;
the rule itself stays as strict, and an exception that no longer occurs fails the test, so the
list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

from lorikit.adapters.methods import method_names

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "lorikit"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# rule -> {offender: owner}. Owners: "evalx" (eval/ package), "merge" (merge/ package).
KNOWN: dict[str, dict[str, str]] = {
    "cycle": {},
    "private import": {},
    "print": {
        "lorikit/merge/doc_table.py": "merge",  # `python -m lorikit.merge.doc_table --check`: a script's stdout
    },
}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is package __init__)."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


MODULES = modules()


def _target_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[tuple[str, str]]:
    """(imported lorikit module, imported name or '') for every import in ``module``, anywhere in it."""
    path, is_pkg = MODULES[module]
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "lorikit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "lorikit":
                base = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub, "") if sub in MODULES else (base, alias.name))
    return out


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        targets = {_target_module(name) for name, _ in imports_of(module)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def check_known(rule: str, offenders: list[str]) -> None:
    known = KNOWN.get(rule, {})
    new = sorted(set(offenders) - set(known))
    gone = sorted(set(known) - set(offenders))
    assert not new, f"{rule}: {new}"
    assert not gone, f"{rule}: fixed, remove from KNOWN: {gone}"


# ---- the rules ---------------------------------------------------------------------------------
def test_no_import_cycle_counting_imports_inside_functions():
    check_known("cycle", [" -> ".join(c) for c in cycles(import_graph())])


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_private_name_imported_across_modules():
    offenders = [f"{module} imports {name} from {target}" for module in MODULES
                 for target, name in imports_of(module)
                 if name.startswith("_") and not name.startswith("__") and target != module]
    check_known("private import", offenders)


def test_no_file_over_400_lines_and_no_function_over_60():
    long_files = [f"{p.relative_to(SRC)}: {n}" for p, _ in MODULES.values()
                  if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    long_functions = []
    for path, _ in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {length}")
    assert not long_files, long_files
    assert not long_functions, long_functions


def test_no_mention_of_a_spec_users_do_not_have():
    spec = "METHODS" + ".md"  # spelled apart so this file does not match itself
    places = [ROOT / "src", ROOT / "docs", ROOT / "tests", ROOT / "bench", ROOT / "README.md"]
    files = [p for place in places for p in ([place] if place.is_file() else place.rglob("*"))
             if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".yml", ".txt", ".toml"}]
    assert len(files) > 50
    hits = [str(p.relative_to(ROOT)) for p in files if spec in p.read_text(errors="replace")]
    assert not hits, hits


def _method_literals(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_method_literals(e, names) for e in node.elts)
    return False


def method_name_comparisons(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines comparing something with an adapter-method name (==, !=, in, not in, match case)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(_method_literals(n, names) for n in [node.left, *node.comparators]):
            lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and _method_literals(node.value, names):
            lines.append(node.lineno)
    return lines


def test_method_names_are_compared_only_inside_adapters_methods():
    names = set(method_names())
    sample = ast.parse('if cfg.method == "lori-s" or m in ("lora", "x"):\n    pass\nok = {"lora": 1}\n')
    assert method_name_comparisons(sample, names) == [1, 1]
    methods_dir = PKG / "adapters" / "methods"
    offenders = [f"{p.relative_to(SRC)}:{line}" for p, _ in MODULES.values() if methods_dir not in p.parents
                 for line in method_name_comparisons(ast.parse(p.read_text()), names)]
    assert not offenders, offenders


def test_library_code_logs_instead_of_printing():
    offenders = []
    for path, _ in MODULES.values():
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("lorikit/cli/") or rel in ("lorikit/__main__.py",):
            continue
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        printing = any(isinstance(c.func, ast.Name) and c.func.id == "print" for c in calls)
        defaults = [d for n in ast.walk(tree) if isinstance(n, ast.arguments) for d in n.defaults + n.kw_defaults
                    if isinstance(d, ast.Name) and d.id == "print"]
        if printing or defaults:
            offenders.append(rel)
    check_known("print", offenders)
