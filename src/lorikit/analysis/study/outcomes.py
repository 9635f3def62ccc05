"""A study's per-item outcomes in one compact file: everything its table is computed from.

The study-table stage writes ``outcomes.json.gz`` beside ``study.json``: the study's layout (which
eval belongs to which method, seed, weight and task, by stage name), every eval's per-item
outcomes (item id, correct, the chosen answer, the gold answer), each training's early-stopping
record and each interference report's measures. ``summarize`` reads only this, so a table — and
every number quoted from it — can be recomputed from a committed file without the adapters
(``python bench/bench_study.py --verify``).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from ...errors import LorikitError
from ...eval.result import RESULT, ItemResult, read_items

FORMAT = "lorikit-study-outcomes"
VERSION = 1
FILE = "outcomes.json.gz"
_EARLY_STOP_KEYS = ("chosen_step", "steps_run", "stopped", "best_dev_loss")


class Outcomes:
    """The layout and the per-item outcomes of one study (``load`` / ``collect`` build it)."""

    def __init__(self, data: dict[str, Any], where: str = "outcomes"):
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise LorikitError(f"{where}: not a {FORMAT} v{VERSION} file")
        self.data, self.where = data, where
        self.layout: dict[str, Any] = data["layout"]
        self.declared: dict[str, Any] = data.get("declared", {})
        self._items: dict[str, tuple[ItemResult, ...]] = {}

    def items(self, name: str) -> tuple[ItemResult, ...]:
        """The per-item results of eval stage ``name``, in data order."""
        if name not in self._items:
            rec = self.data["evals"].get(name)
            if rec is None:
                raise LorikitError(f"{self.where}: no outcomes of eval {name!r}")
            self._items[name] = tuple(ItemResult(i, int(c), a, g) for i, c, a, g in
                                      zip(rec["ids"], rec["correct"], rec["answers"], rec["gold"]))
        return self._items[name]

    def training(self, name: str) -> dict[str, Any] | None:
        return self.data["trainings"].get(name)

    def analysis(self, name: str) -> dict[str, Any]:
        return self.data["analyses"][name]

    def save(self, path: str | os.PathLike) -> None:
        raw = json.dumps(self.data, separators=(",", ":")).encode()  # key order is the layout's order
        Path(path).write_bytes(gzip.compress(raw, mtime=0))  # mtime 0: the same outcomes, the same bytes


def load(path: str | os.PathLike) -> Outcomes:
    try:
        with gzip.open(path, "rt") as fh:
            data = json.load(fh)
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise LorikitError(f"{path}: cannot read study outcomes ({exc})") from None
    return Outcomes(data, str(path))


def _eval_record(folder: Path) -> dict[str, Any]:
    items = read_items(folder)
    return {"ids": [i.id for i in items], "correct": "".join(str(i.correct) for i in items),
            "answers": [i.prediction for i in items], "gold": [i.gold for i in items]}


def collect(runs: dict[str, Any], base: dict[str, Any], continual: dict[str, Any] | None,
            declared: dict[str, Any] | None = None, archive: Outcomes | None = None) -> Outcomes:
    """Read a finished study's stage outputs (paths, as the stage receives them) into ``Outcomes``:
    each path becomes its stage's name, and what the table needs from it is copied in. ``declared``:
    the analysis the study declared before it ran (``primary``, ``alpha``, ``equivalence_margin``).
    ``archive``: committed outcomes of the same study, read for each stage whose folder is not here."""
    evals: dict[str, Any] = {}
    trainings: dict[str, Any] = {}
    analyses: dict[str, Any] = {}

    seen: dict[str, Path] = {}

    def named(path: Path) -> str:
        """A stage's name stands for its folder: two folders of one name would mix their outcomes."""
        if seen.setdefault(path.name, path) != path:
            raise LorikitError(f"study table: {path} and {seen[path.name]} share the stage name {path.name!r}")
        return path.name

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if not isinstance(value, str) or os.sep not in value:
            return value  # task names, weights
        path = Path(value)
        if key == "analysis":
            name = path.parent.name
            full = json.loads(path.read_text())
            analyses[name] = {k: full[k] for k in ("comparison", "output_shift") if k in full}
            return name
        if (path / RESULT).is_file():
            name = named(path)
            if name not in evals:
                evals[name] = _eval_record(path)
            return name
        meta = path / "lorikit.json"
        if meta.is_file():
            es = json.loads(meta.read_text()).get("early_stopping") or {}
            trainings[named(path)] = {k: es.get(k) for k in _EARLY_STOP_KEYS} if es else None
            return path.name
        if archive is not None and not path.exists():
            name = named(path)
            if name in archive.data["evals"]:
                evals[name] = archive.data["evals"][name]
                return name
            if name in archive.data["trainings"]:
                trainings[name] = archive.data["trainings"][name]
                return name
        raise LorikitError(f"study table: {value}: neither an eval result nor a trained adapter")

    layout = {"runs": walk(runs), "base": walk(base), "continual": walk(continual) if continual else None}
    return Outcomes({"format": FORMAT, "version": VERSION, "layout": layout, "declared": dict(declared or {}),
                     "evals": evals, "trainings": trainings, "analyses": analyses})
