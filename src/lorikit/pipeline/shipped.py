"""Recipes shipped inside the package (``lorikit/recipes/*.yaml``), found by name.

``lorikit run merge-3tasks`` runs the shipped ``merge-3tasks.yaml``; a path to an existing file
always wins over a shipped name. ``lorikit run --list`` lists them with their first comment line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..utils.settings import did_you_mean



def shipped_recipes() -> dict[str, Path]:
    """name -> path of every recipe in the installed package."""
    folder = resources.files("lorikit") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def describe(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def resolve_recipe(name_or_path: str) -> Path:
    """An existing file as given, else the shipped recipe of that name (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and stem in shipped:
        return shipped[stem]
    hint = did_you_mean(stem, shipped) if path.parent == Path(".") else ""
    raise UsageError(f"{name_or_path}: recipe file not found and not a shipped recipe{hint} "
                     f"(shipped: {', '.join(sorted(shipped))}; lorikit run --list)")
