"""``--data``: local .json/.jsonl files, built-in tasks (``builtin:NAME[:SPLIT]``), Hub datasets.

Any spec may end in ``?split=train|dev[&fraction=F][&seed=S]`` to carve a development split out
of it (``split_dev``: a fixed-seed shuffle, dev = ``round(F · rows)`` rows, F = 0.1 and S = 0 by
default): ``gsm8k/train.jsonl?split=dev`` and ``gsm8k/train.jsonl?split=train`` are disjoint and
together hold every row, so training on the second never sees the first. Carves nest, the last
applying to the rows the earlier ones select: ``FILE?split=train&fraction=0.2?split=dev`` is a dev
split carved out of FILE's training part, disjoint from ``FILE?split=dev&fraction=0.2`` (a test set). The carve happens
before ``limit``, so ``--limit 32`` takes the first 32 rows *of the split*. Used by training,
evaluation, OSRM statistics and analysis alike.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path
from typing import Any

from ..errors import LorikitError, UsageError
from ..utils.textfile import read_text
from .builtin import BUILTIN_TASKS, builtin_rows, parse_builtin
from .formats import FORMATS, Example, detect_format, to_example


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl (one object a line) or .json (a list, or an object holding one) file."""
    path = Path(path)
    text = read_text(path, f"--data {path}", missing="file not found", expected="a .json or .jsonl file")
    if path.suffix == ".jsonl":
        rows = []
        # split on "\n" only: str.splitlines() also breaks on U+2028, which JSON allows inside strings
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LorikitError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from exc
        return rows
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LorikitError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from exc
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise LorikitError(f"{path}: expected a list of rows (or an object holding one list)")
            data = lists[0]
        if not isinstance(data, list):
            raise LorikitError(f"{path}: expected a list of rows")
        return data
    raise UsageError(f"--data {path}: unsupported file type {path.suffix!r} (use .json or .jsonl)")


def _hub_rows(name: str, split: str) -> list[dict[str, Any]]:
    if importlib.util.find_spec("datasets") is None:
        raise LorikitError(f"--data {name}: not a local file; Hub data sets need the datasets package "
                           "(pip install 'lorikit[hub]')")
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, unknown name, missing split: one line for all
        raise LorikitError(f"--data {name}: not a local file and could not load it from the Hub "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from exc
    return [dict(r) for r in ds]


SPLIT_KEYS = ("split", "fraction", "seed")


def carve_spec(spec: str, split: str, fraction: float) -> str:
    """``SPEC?split=SPLIT&fraction=F``: the train or dev part of a fixed-seed carve of ``spec``
    (nested when ``spec`` is itself a carve: a dev split of a training part stays out of its test)."""
    return f"{spec}?split={split}&fraction={fraction:g}"


def source_of(spec: str) -> str:
    """The data source under every carve: ``FILE?split=train?split=dev`` → ``FILE``."""
    return spec.partition("?")[0]


def parse_split(spec: str) -> tuple[str, dict[str, Any] | None]:
    """``FILE?split=dev&fraction=0.1&seed=0`` → (``FILE``, {split, fraction, seed}); no ``?`` → (spec, None).
    With nested carves the outermost (last) one is parsed and the base keeps the others."""
    base, sep, query = spec.rpartition("?")
    if not sep:
        return spec, None
    opts: dict[str, Any] = {"fraction": 0.1, "seed": 0}
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if not eq or key not in SPLIT_KEYS:
            raise UsageError(f"--data {spec}: expected ?split=train|dev[&fraction=F][&seed=S], got {item!r}")
        opts[key] = value
    if opts.get("split") not in ("train", "dev"):
        raise UsageError(f"--data {spec}: split must be train or dev (got {opts.get('split')!r})")
    try:
        opts["fraction"], opts["seed"] = float(opts["fraction"]), int(opts["seed"])
    except ValueError as exc:
        raise UsageError(f"--data {spec}: fraction must be a number and seed an integer") from exc
    if not 0 < opts["fraction"] < 1:
        raise UsageError(f"--data {spec}: fraction {opts['fraction']} must be in (0, 1)")
    return base, opts


def load_rows(spec: str, split: str = "train", n_builtin: int = 1000, seed: int = 0) -> tuple[list[dict], str]:
    """(rows, where) for any ``--data`` spec; ``where`` names the source in error messages."""
    base, carve = parse_split(spec)
    if carve is not None:
        rows, _ = load_rows(base, split, n_builtin, seed)
        if len(rows) < 2:
            raise LorikitError(f"{base}: {len(rows)} row(s), too few to carve a dev split")
        train_rows, dev_rows = split_dev(rows, carve["fraction"], carve["seed"])
        # row numbers in errors then count within the split, so name the split, not the file
        return (dev_rows if carve["split"] == "dev" else train_rows), spec
    kind = source_kind(spec)
    if kind == "builtin":
        name, bsplit = parse_builtin(spec)
        return builtin_rows(name, bsplit, n_builtin, seed), spec
    if kind == "file":
        return read_rows(Path(spec)), str(Path(spec))
    return _hub_rows(spec, split), spec


HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")  # a Hugging Face dataset id


def source_kind(spec: str, flag: str = "--data") -> str:
    """How ``load_rows`` reads ``spec`` (no ``?split=`` carve): ``builtin``, ``file`` or ``hub``; a spec
    that is none of them is a file not found."""
    if spec.startswith("builtin:"):
        return "builtin"
    path = Path(spec)
    if path.suffix in (".json", ".jsonl") or path.exists():
        return "file"
    if HUB_NAME.fullmatch(spec):
        return "hub"
    raise UsageError(f"{flag} {spec}: file not found")


def check_source(spec: str, flag: str = "--data") -> None:
    """Fail now — not after a model has loaded — when ``spec`` names a local file that is not there or
    an unknown built-in task; what only reading can tell (a row's fields, a Hub id offline) waits for
    ``load_rows``."""
    base, _ = parse_split(spec)
    kind = source_kind(base, flag)
    if kind == "builtin":
        parse_builtin(base)
    elif kind == "file" and not Path(base).exists():
        raise UsageError(f"{flag} {base}: file not found")


def load_examples(spec: str, fmt: str = "auto", limit: int | None = None, split: str = "train",
                  n_builtin: int = 1000, seed: int = 0) -> list[Example]:
    """Read ``spec`` and convert every row; errors name the file, line and field."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: unknown (choose from {', '.join(FORMATS)})")
    rows, where = load_rows(spec, split, n_builtin, seed)
    base = source_of(spec)
    if base.startswith("builtin:") and fmt == "auto":
        fmt = BUILTIN_TASKS[parse_builtin(base)[0]][1]
    if not rows:
        raise LorikitError(f"{where}: no rows")
    line_of = (lambda i: f"{where}:{i + 1}") if where.endswith(".jsonl") else (lambda i: f"{where}: row {i + 1}")
    if fmt == "auto":
        if not isinstance(rows[0], dict):
            raise LorikitError(f"{line_of(0)}: row is {type(rows[0]).__name__}, expected a JSON object")
        fmt = detect_format(rows[0], line_of(0))
    if limit is not None:
        rows = rows[:limit]
    return [to_example(row, fmt, line_of(i)) for i, row in enumerate(rows)]


def split_dev(examples: list, dev_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """(train, dev): a fixed-seed shuffle, dev taking ``dev_fraction`` of the rows."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, int(round(len(examples) * dev_fraction)))
    dev = set(order[:n_dev])
    return [e for i, e in enumerate(examples) if i not in dev], [examples[i] for i in sorted(dev)]
