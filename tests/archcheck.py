"""The floors of lorikit and the house rules, read from the source (AST) of any checkout.

``FLOORS`` is the one list of floors: docs/architecture.md's floor table is generated from it
(``python tests/archcheck.py --write`` rewrites the table, ``tests/test_architecture.py`` checks it).
``findings(src)`` reads a ``src/`` folder and returns every breach of a rule, so the same code checks
the repository and, in ``tests/test_architecture_plants.py``, a scratch copy with violations planted.

An import is read wherever it stands (module level or inside a function), including
``importlib.import_module`` / ``__import__`` with a literal name or an f-string whose head is literal
(``f"{__name__}.{name}"`` counts as importing every module of that package), and it counts as
importing every package ``__init__`` it runs (``lorikit.eval.tasks.base`` runs ``eval/__init__`` and
``eval/tasks/__init__``) — except the root ``lorikit/__init__``, which every import runs.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# ---- the floors, bottom up ---------------------------------------------------------------------
# (packages / top-level modules of lorikit on that floor, what lives there). A module imports only
# from its own floor or below; "lorikit" is the package's face (lorikit/__init__.py re-exports the API).
FLOORS: list[tuple[tuple[str, ...], str]] = [
    (("errors", "_version", "resources"), "LorikitError (exit 1), UsageError (exit 2); __version__; data files"),
    (("utils", "data"), "atomic writes, validation, settings · rows → examples → tokens, built-in tasks"),
    (("models",), "base models by name, devices, classification heads"),
    (("adapters",), "adapter methods, initialisations of A, masks, packing, the adapter on disk"),
    (("merge", "osrm", "hub"), "merge methods · OSRM statistics, init and transform · Hub upload"),
    (("train", "integrations"), "the training loop · LoRI / OSRM for PEFT and transformers.Trainer users"),
    (("eval",), "generation and scoring (task specs, scorers, lm-eval harness, sandbox)"),
    (("analysis", "search"), "interference report, a study's outcomes → run-level table and report · "
                              "merge-weight search"),
    (("pipeline",), "recipes of named stages (kinds/), resumable"),
    (("study", "demo"), "the study protocol: config, recipe builder, run_study · the demo study"),
    (("cli",), "the command line: flags from typed configs, calls the API, prints"),
    (("__main__", "lorikit"), "python -m lorikit · the package's face (from lorikit import train, ...)"),
]

# Breaches that still stand, each pinned to its line (file: the line's text), with its owner and why.
# An entry that no longer occurs fails the test, so the list only shrinks.
KNOWN: dict[str, dict[str, str]] = {
    "floor": {
    },
    "print": {
        "lorikit/utils/doc_block.py: print(f\"{path}: {what} are out of date; run python -m {module} {path}\")":
        "a script's stdout (python -m lorikit.merge.doc_table --check, lorikit.train.doc_table --check)",
        "lorikit/eval/sandbox/child.py: read, write, exit_, flush = os.read, os.write, os._exit, "
        "(sys.stdout.flush, sys.stderr.flush)": "the sandboxed program's own stdout, flushed before the verdict",
    },
    "method name": {
    },
}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
LIBRARY_MAY_PRINT = ("lorikit.cli", "lorikit.__main__")
# one method per file: a method file imports no other method file of its folder (shared code has its own module)
METHOD_FOLDERS = {"lorikit.merge.methods": set(), "lorikit.adapters.methods": {"base", "plans"},
                  "lorikit.adapters.inits": {"base"}, "lorikit.eval.tasks": {"base"},
                  "lorikit.pipeline.kinds": {"base"}}


@dataclass(frozen=True)
class Finding:
    rule: str
    file: str  # relative to src/
    line: int
    text: str  # the source line, stripped: what KNOWN pins
    detail: str

    @property
    def key(self) -> str:
        return f"{self.file}: {self.text}"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.detail}  [{self.text}]"


def floor_of() -> dict[str, int]:
    return {name: i + 1 for i, (names, _) in enumerate(FLOORS) for name in names}


def floor_table() -> str:
    """The floor picture of docs/architecture.md, top floor first."""
    width = max(len(" ".join(n + ("/" if n[0].isalpha() and n not in _MODULE_NAMES else "") for n in names))
                for names, _ in FLOORS)
    rows = []
    for i, (names, what) in reversed(list(enumerate(FLOORS))):
        label = " ".join(n + ("/" if n[0].isalpha() and n not in _MODULE_NAMES else "") for n in names)
        rows.append(f"{i + 1:>2}  {label:<{width}}  {what}")
    return "```\n" + "\n".join(rows) + "\n```"


_MODULE_NAMES = {"errors", "hub", "demo", "lorikit"}  # single files (and the face), drawn without a slash


class Source:
    """The modules of one ``src/`` folder and the imports each makes."""

    def __init__(self, src: Path):
        self.src = src
        self.modules: dict[str, tuple[Path, bool]] = {}
        for path in sorted((src / "lorikit").rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            self.modules[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
        self.trees = {m: ast.parse(p.read_text()) for m, (p, _) in self.modules.items()}
        self.lines = {m: p.read_text().splitlines() for m, (p, _) in self.modules.items()}
        self._imports: dict[str, list[tuple[set[str], str, int]]] = {}

    def rel(self, module: str) -> str:
        return self.modules[module][0].relative_to(self.src).as_posix()

    def text(self, module: str, line: int) -> str:
        return self.lines[module][line - 1].strip()

    def package_of(self, module: str) -> list[str]:
        return module.split(".") if self.modules[module][1] else module.split(".")[:-1]

    def target(self, name: str) -> str | None:
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None

    def with_parents(self, importer: str, target: str) -> set[str]:
        """``target`` and every package __init__ importing it runs, but the root and the importer's own."""
        out = {target}
        parts = target.split(".")
        own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
        for i in range(2, len(parts)):
            parent = ".".join(parts[:i])
            if parent in self.modules and parent not in own:
                out.add(parent)
        return out

    def _dynamic_name(self, module: str, node: ast.AST) -> tuple[str, bool] | None:
        """(name, complete) for a literal or f-string import name; None where its head is not literal."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value, True
        if not isinstance(node, ast.JoinedStr):
            return None
        head = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                head += str(part.value)
            elif isinstance(part.value, ast.Name) and part.value.id in ("__name__", "__package__"):
                head += module if part.value.id == "__name__" else ".".join(self.package_of(module))
            else:
                return (head, False) if head else None
        return head, True

    def imports(self, module: str) -> list[tuple[set[str], str, int]]:
        if module not in self._imports:
            self._imports[module] = self._read_imports(module)
        return self._imports[module]

    def _read_imports(self, module: str) -> list[tuple[set[str], str, int]]:
        """(lorikit modules the statement runs, the name imported from the last ('' for a module), line)."""
        package = self.package_of(module)
        out = []
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "lorikit" and (t := self.target(a.name)):
                        out.append((self.with_parents(module, t), "", node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                elif (node.module or "").split(".")[0] == "lorikit":
                    base = node.module
                else:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in self.modules:
                        out.append((self.with_parents(module, sub), "", node.lineno))
                    elif t := self.target(base):
                        out.append((self.with_parents(module, t), alias.name, node.lineno))
            elif isinstance(node, ast.Call) and node.args and _is_dynamic_import(node.func):
                found = self._dynamic_name(module, node.args[0])
                if found is None:
                    continue
                name, complete = found
                if name.startswith(".") and complete:
                    name = ".".join(package[:len(package) - (len(name) - len(name.lstrip("."))) + 1]) + "." + \
                        name.lstrip(".")
                if name.split(".")[0] != "lorikit":
                    continue
                hits = {self.target(name)} if complete else {m for m in self.modules if m.startswith(name)}
                for t in hits - {None}:
                    out.append((self.with_parents(module, t), "", node.lineno))
        return out

    def edges(self) -> list[tuple[str, str, int]]:
        """(importer, imported module, line), self-imports left out."""
        return sorted({(m, t, line) for m in self.modules for targets, _, line in self.imports(m)
                       for t in targets if t != m})


def _is_dynamic_import(func: ast.AST) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))


def findings(src: Path, method_names: set[str]) -> list[Finding]:
    source = Source(src)
    out = floor_findings(source) + cycle_findings(source) + private_findings(source) + size_findings(source)
    out += sibling_findings(source)
    return out + print_findings(source) + method_name_findings(source, method_names)


# ---- the rules ---------------------------------------------------------------------------------
def _floor(module: str, floors: dict[str, int]) -> int | None:
    parts = module.split(".")[1:] or ["lorikit"]
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in floors:
            return floors[".".join(parts[:i])]
    return None


def floor_findings(source: Source) -> list[Finding]:
    floors, out = floor_of(), []
    for module in source.modules:
        if _floor(module, floors) is None:
            out.append(Finding("floor", source.rel(module), 1, "", f"{module} is on no floor: add it to FLOORS"))
    for importer, target, line in source.edges():
        mine, theirs = _floor(importer, floors), _floor(target, floors)
        if mine is not None and theirs is not None and theirs > mine:
            out.append(Finding("floor", source.rel(importer), line, source.text(importer, line),
                               f"{importer} (floor {mine}) imports {target} (floor {theirs})"))
    return _one_per_line(out)


def sibling_findings(source: Source) -> list[Finding]:
    """A method file that imports another method file of its folder (one method, one file)."""
    out = []
    for importer, target, line in source.edges():
        folder, _, name = importer.rpartition(".")
        shared = METHOD_FOLDERS.get(folder)
        if shared is None or source.modules[importer][1] or name in shared:
            continue
        if target.rpartition(".")[0] == folder and target.rpartition(".")[2] not in shared:
            out.append(Finding("sibling", source.rel(importer), line, source.text(importer, line),
                               f"method file {importer} imports method file {target}"))
    return out


def _known_edges(source: Source) -> set[tuple[str, int]]:
    return {(f.file, f.line) for f in floor_findings(source) if f.key in KNOWN["floor"]}


def cycle_findings(source: Source) -> list[Finding]:
    """Import cycles among modules, and among packages (a cycle of whole packages, e.g. merge ⇄ osrm)."""
    known = _known_edges(source)
    edges = [(a, b) for a, b, line in source.edges() if (source.rel(a), line) not in known]
    out = []
    for level, name in ((0, "module"), (1, "package")):
        graph: dict[str, set[str]] = {}
        for a, b in edges:
            a, b = (_package(a), _package(b)) if level else (a, b)
            graph.setdefault(a, set())
            graph.setdefault(b, set())
            if a != b:
                graph[a].add(b)
        for component in cycles(graph):
            first = component[0]
            rel = source.rel(first) if first in source.modules else first
            out.append(Finding("cycle", rel, 1, " -> ".join(component), f"{name} cycle: {' -> '.join(component)}"))
    return out


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
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


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)):
        return f"{base}.{node.attr}"
    return None


def private_findings(source: Source) -> list[Finding]:
    """A private name of another lorikit module, imported (from m import _x) or reached (m._x)."""
    out = []
    for module in source.modules:
        for targets, name, line in source.imports(module):
            if _private(name):
                out.append(Finding("private", source.rel(module), line, source.text(module, line),
                                   f"imports {name} from another module"))
        bound = _module_names(source, module)
        for node in ast.walk(source.trees[module]):
            reached = None
            if isinstance(node, ast.Attribute) and _private(node.attr):
                reached = (_dotted(node.value), node.attr)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
                reached = (_dotted(node.args[0]), node.args[1].value)
            if not reached or not reached[0]:
                continue
            head, _, rest = reached[0].partition(".")
            owner = ".".join(filter(None, [bound.get(head), rest])) if head in bound else None
            if owner in source.modules and owner != module:
                out.append(Finding("private", source.rel(module), node.lineno, source.text(module, node.lineno),
                                   f"reaches {reached[1]} of {owner}"))
    return out


def _module_names(source: Source, module: str) -> dict[str, str]:
    """Local name -> the lorikit module it is bound to by an import in ``module``."""
    package = source.package_of(module)
    bound = {}
    for node in ast.walk(source.trees[module]):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "lorikit":
                    bound[a.asname or "lorikit"] = a.name if a.asname else "lorikit"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:
                if f"{base}.{a.name}" in source.modules:
                    bound[a.asname or a.name] = f"{base}.{a.name}"
    return bound


def size_findings(source: Source) -> list[Finding]:
    out = []
    for module, (path, _) in source.modules.items():
        if (n := len(source.lines[module])) > MAX_FILE_LINES:
            out.append(Finding("size", source.rel(module), 1, f"{n} lines", f"file of {n} lines > {MAX_FILE_LINES}"))
        for node in ast.walk(source.trees[module]):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(Finding("size", source.rel(module), node.lineno, source.text(module, node.lineno),
                                       f"function {node.name} of {length} lines > {MAX_FUNCTION_LINES}"))
    return out


def _prints(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name) and node.id == "print" and isinstance(node.ctx, ast.Load):
        return "print"
    dotted = _dotted(node) if isinstance(node, ast.Attribute) else None
    if dotted in ("builtins.print", "__builtins__.print", "sys.stdout", "sys.stderr", "sys.__stdout__",
                  "sys.__stderr__"):
        return dotted
    if isinstance(node, ast.ImportFrom) and node.module in ("sys", "builtins"):
        names = {a.name for a in node.names} & {"print", "stdout", "stderr", "__stdout__", "__stderr__"}
        return f"from {node.module} import {', '.join(sorted(names))}" if names else None
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in ("print", "stdout", "stderr")):
        return f"getattr(..., {node.args[1].value!r})"
    return None


def print_findings(source: Source) -> list[Finding]:
    """Library code logs: print, builtins.print and sys.stdout / sys.stderr belong to cli/ only."""
    out = []
    for module in source.modules:
        if module.startswith(LIBRARY_MAY_PRINT):
            continue
        seen = set()
        for node in ast.walk(source.trees[module]):
            if (what := _prints(node)) and (node.lineno, what) not in seen:
                seen.add((node.lineno, what))
                out.append(Finding("print", source.rel(module), node.lineno, source.text(module, node.lineno),
                                   f"{what} in library code (log instead)"))
    return _one_per_line(out)


def _one_per_line(found: list[Finding]) -> list[Finding]:
    lines = {}
    for f in found:
        lines.setdefault((f.file, f.line), f)
    return list(lines.values())


# ---- adapter-method names: only adapters/methods/ may tell methods apart by name ---------------
def _names_in(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_in(e, names) for e in node.elts)
    return False


def _name_constants(tree: ast.Module, names: set[str]) -> set[str]:
    """Module-level names bound to a method name or a collection of them (``LORI = "lori-d"``)."""
    found = set()
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if value is not None and _names_in(value, names):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= {t.id for t in targets if isinstance(t, ast.Name)}
    return found


def _fstring_names(node: ast.JoinedStr, names: set[str]) -> bool:
    """An f-string that builds a name from a method name: the word holding it (or its head, as in
    f"lori-{variant}") is glued to a placeholder. Prose that mentions a method is not flagged."""
    token = re.compile("|".join(rf"(?<![\w]){re.escape(n)}(?![\w])" for n in sorted(names)))
    heads = tuple({n[:k] for n in names for k in range(4, len(n))})
    parts = node.values
    for i, part in enumerate(parts):
        if not isinstance(part, ast.Constant) or not str(part.value).strip():
            continue
        text = str(part.value)
        glued = []
        if i + 1 < len(parts) and not text[-1].isspace():
            glued.append(text.split()[-1])
        if i > 0 and not text[0].isspace():
            glued.append(text.split()[0])
        if any(token.search(w) for w in glued) or (glued and glued[0].endswith(heads) and i + 1 < len(parts)):
            return True
    return False


def method_name_uses(tree: ast.Module, names: set[str]) -> list[tuple[int, str]]:
    """(line, how) for each place that tells adapter methods apart by their name."""
    constants = _name_constants(tree, names)
    prefixes = {n[:k] for n in names for k in range(1, len(n) + 1)}
    suffixes = {n[-k:] for n in names for k in range(1, len(n) + 1)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_in(n, names) for n in operands):
                out.append((node.lineno, "compared with a method name"))
            elif any(isinstance(n, ast.Name) and n.id in constants for n in operands):
                out.append((node.lineno, "compared with a named constant holding method names"))
        elif isinstance(node, ast.MatchValue) and _names_in(node.value, names):
            out.append((node.lineno, "matched against a method name"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith") and node.args):
            affixes = prefixes if node.func.attr == "startswith" else suffixes
            arg = node.args[0]
            values = [e.value for e in arg.elts] if isinstance(arg, ast.Tuple) else [getattr(arg, "value", None)]
            if any(isinstance(v, str) and v in affixes and len(v) >= 3 for v in values):
                out.append((node.lineno, f"{node.func.attr}() with part of a method name"))
        elif isinstance(node, ast.Dict) and any(k is not None and _names_in(k, names) for k in node.keys):
            out.append((node.lineno, "a method name as a dict key"))
        elif isinstance(node, ast.Subscript) and _names_in(node.slice, names):
            out.append((node.lineno, "a method name as a key"))
        elif isinstance(node, ast.JoinedStr) and _fstring_names(node, names):
            out.append((node.lineno, "a method name spelled in an f-string"))
    return out


def method_name_findings(source: Source, names: set[str]) -> list[Finding]:
    out = []
    for module in source.modules:
        if module.startswith("lorikit.adapters.methods"):
            continue
        for line, how in method_name_uses(source.trees[module], names):
            out.append(Finding("method name", source.rel(module), line, source.text(module, line), how))
    return _one_per_line(out)


def spec_mentions(root: Path) -> list[str]:
    spec = "METHODS" + ".md"  # spelled apart so this file does not match itself
    places = [root / "src", root / "docs", root / "tests", root / "bench", root / "README.md"]
    files = [p for place in places for p in ([place] if place.is_file() else place.rglob("*"))
             if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".yml", ".txt", ".toml"}]
    return [str(p.relative_to(root)) for p in files if spec in p.read_text(errors="replace")]


def unexplained(found: list[Finding]) -> tuple[list[Finding], list[str]]:
    """(findings KNOWN does not pin, KNOWN entries that no longer occur); one entry pins one line."""
    known = Counter((rule, key) for rule, keys in KNOWN.items() for key in keys)
    seen = Counter((f.rule, f.key) for f in found)
    new = [f for f in found if seen[f.rule, f.key] > known[f.rule, f.key]]
    gone = sorted(f"{rule}: {key}" for rule, key in (known - seen))
    return new, gone


# ---- docs/architecture.md's floor table --------------------------------------------------------
BEGIN = "<!-- floors: generated from tests/archcheck.py FLOORS by `python tests/archcheck.py --write` -->"
END = "<!-- end of floors -->"


def docs_with_table(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{floor_table()}\n{END}{tail}"


if __name__ == "__main__":
    doc = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
    if sys.argv[1:] == ["--write"]:
        doc.write_text(docs_with_table(doc.read_text()))
    else:
        print(floor_table())
