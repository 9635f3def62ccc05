"""Recipe files: named stages and references to each other's outputs.

```yaml
workdir: runs/three-tasks          # every stage writes <workdir>/<stage name> (a folder)
defaults:                          # settings shared by every stage of a kind
  train: {model: tiny-random-llama, max_steps: 20}
stages:
  arith:
    kind: train
    data: builtin:arithmetic
  report:
    kind: analyze
    adapters: [$arith, $rev]       # $NAME = the output folder of stage NAME
    masks: [$arith-masks/masks/0.9_mask.pt]   # $NAME/sub/path = a path inside it
```

One reference syntax: ``$NAME`` anywhere in a string setting (stage names are letters, digits,
``_`` and ``-``) stands for that stage's output folder and makes it a parent: parents run first.
``$$`` is a literal ``$``. ``$NAME`` needs no YAML quoting, in block or flow lists alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..utils.yamlfile import load_yaml, parse_yaml
from .kinds import registered_kinds

STAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
REFERENCE = re.compile(r"\$(\$|[A-Za-z0-9_][A-Za-z0-9_-]*)")
TOP_LEVEL_KEYS = {"name", "description", "workdir", "defaults", "stages"}


@dataclass
class Stage:
    name: str
    kind: str
    settings: dict[str, Any]  # defaults of the kind merged with the stage's own, references unresolved
    parents: list[str] = field(default_factory=list)  # stages referenced by $NAME, in first-seen order


@dataclass
class Recipe:
    name: str
    workdir: Path
    stages: dict[str, Stage]  # in file order
    source: str = "<recipe>"

    def out(self, stage: str) -> Path:
        return self.workdir / stage

    def order(self) -> list[str]:
        """Stages in dependency order (parents first; file order among independent stages)."""
        return topological_order({n: s.parents for n, s in self.stages.items()}, self.source)

    def resolve(self, stage: str) -> dict[str, Any]:
        """The stage's settings with every ``$NAME`` replaced by that stage's output folder."""
        return _substitute(self.stages[stage].settings, lambda ref: str(self.out(ref)))


def _walk_strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


def _substitute(value: Any, replace) -> Any:
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: "$" if m.group(1) == "$" else replace(m.group(1)), value)
    if isinstance(value, dict):
        return {k: _substitute(v, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, replace) for v in value]
    return value


def references(settings: dict[str, Any]) -> list[str]:
    """Stage names referenced as ``$NAME`` in any string of ``settings`` (first-seen order)."""
    found: list[str] = []
    for text in _walk_strings(settings):
        for m in REFERENCE.finditer(text):
            if m.group(1) != "$" and m.group(1) not in found:
                found.append(m.group(1))
    return found


def topological_order(parents: dict[str, list[str]], source: str = "<recipe>") -> list[str]:
    """Kahn-style order that keeps file order among ready stages; a cycle is named in the error."""
    order: list[str] = []
    done: set[str] = set()
    remaining = list(parents)
    while remaining:
        ready = [n for n in remaining if all(p in done for p in parents[n])]
        if not ready:
            raise UsageError(f"{source}: stages form a cycle: {' -> '.join(_find_cycle(parents, remaining))}")
        for n in ready:
            order.append(n)
            done.add(n)
        remaining = [n for n in remaining if n not in done]
    return order


def _find_cycle(parents: dict[str, list[str]], candidates: list[str]) -> list[str]:
    # Every stage left over has a parent left over, so following parents must revisit a stage.
    path: list[str] = []
    node = candidates[0]
    while node not in path:
        path.append(node)
        node = next(p for p in parents[node] if p in candidates)
    cycle = path[path.index(node):] + [node]
    return list(reversed(cycle))  # parent -> child reads as the order things would have to run


def parse_override(item: str) -> tuple[str | None, str, Any]:
    """``[STAGE.]KEY=VALUE`` → (stage or None, key, VALUE read as a YAML scalar/list: 2 → int)."""
    target, eq, text = item.partition("=")
    stage, dot, key = target.rpartition(".")
    if not eq or not key or (dot and not stage):
        raise UsageError(f"--set {item!r}: expected KEY=VALUE or STAGE.KEY=VALUE")
    value = parse_yaml(text, f"--set {item!r}: VALUE") if text.strip() else ""  # bounded like every YAML file
    return (stage or None), key, value


def apply_overrides(stages: dict[str, "Stage"], overrides: list[str], source: str) -> None:
    """``KEY=VALUE`` replaces KEY in every stage that has it (its own or from ``defaults``);
    ``STAGE.KEY=VALUE`` sets KEY on that stage only (adding it if absent)."""
    for item in overrides:
        stage, key, value = parse_override(item)
        if stage is not None:
            if stage not in stages:
                raise UsageError(f"--set {item!r}: no stage {stage!r} in {source} (stages: {', '.join(stages)})")
            targets = [stages[stage]]
        else:
            targets = [s for s in stages.values() if key in s.settings]
            if not targets:
                raise UsageError(f"--set {item!r}: no stage of {source} has a setting {key!r} "
                                 f"(use STAGE.{key}=VALUE to add it to one stage)")
        for target in targets:
            target.settings[key] = value


def parse_recipe(data: Any, source: str = "<recipe>", workdir: str | os.PathLike | None = None,
                 overrides: list[str] | None = None) -> Recipe:
    """Check a recipe's structure and references (stage kinds are checked by the runner).
    ``overrides`` are ``--set`` items (see ``apply_overrides``), applied before references are read."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a recipe is a mapping with a 'stages' key")
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown top-level key {unknown[0]!r} (allowed: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    stages_raw = data.get("stages")
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise UsageError(f"{source}: 'stages' must be a non-empty mapping of stage name → settings")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or not all(isinstance(v, dict) for v in defaults.values()):
        raise UsageError(f"{source}: 'defaults' must map a stage kind to its default settings")
    name = str(data.get("name") or Path(source).stem)
    wd = workdir or data.get("workdir") or Path("runs") / name
    stages: dict[str, Stage] = {}
    for stage_name, body in stages_raw.items():
        stage_name = str(stage_name)
        if not STAGE_NAME.match(stage_name):
            raise UsageError(f"{source}: stage name {stage_name!r}: use letters, digits, '_' and '-'")
        if not isinstance(body, dict):
            raise UsageError(f"{source}: stage {stage_name!r}: expected a mapping of settings")
        kind = body.get("kind")
        if not isinstance(kind, str) or not kind:
            raise UsageError(f"{source}: stage {stage_name!r}: missing 'kind'")
        settings = {**defaults.get(kind, {}), **{k: v for k, v in body.items() if k != "kind"}}
        stages[stage_name] = Stage(stage_name, kind, settings)
    check_defaults(defaults, source)
    apply_overrides(stages, overrides or [], source)
    for stage in stages.values():
        stage.parents = references(stage.settings)
    for stage in stages.values():
        for ref in stage.parents:
            if ref not in stages:
                raise UsageError(f"{source}: stage {stage.name!r} refers to unknown stage ${ref} "
                                 f"(stages: {', '.join(stages)})")
            if ref == stage.name:
                raise UsageError(f"{source}: stage {stage.name!r} refers to its own output ${ref}")
    recipe = Recipe(name, Path(wd), stages, source)
    recipe.order()  # cycles are an error at parse time
    return recipe


def _line(mapping: Any, key: str, source: str) -> str:
    line = getattr(mapping, "key_lines", {}).get(key)
    return f"{source}:{line}" if line else source


def check_defaults(defaults: dict[str, Any], source: str) -> None:
    """Each ``defaults:`` entry names a stage kind (a typo would silently not apply)."""
    kinds = registered_kinds()
    for kind in defaults:
        if kind not in kinds:
            raise UsageError(f"{_line(defaults, kind, source)}: defaults for unknown stage kind {kind!r} "
                             f"(kinds: {', '.join(sorted(kinds))})")


def load_recipe(path: str | os.PathLike, workdir: str | os.PathLike | None = None,
                overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML file (``workdir`` overrides the file's; ``overrides``: ``--set`` items)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: recipe file not found")
    data = load_yaml(path)
    return parse_recipe(data, str(path), workdir, overrides)
