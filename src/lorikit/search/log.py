"""``search_log.jsonl``: the evaluations of a search, one JSON line each, replayed by a rerun.

The first line is a header holding every setting that decides which points the search visits
(adapters and their content hashes, dev sets, method, ranges, seed, ...); the budget is not among
them, so a rerun with a larger ``--budget`` continues a finished search. Each later line is one
evaluation: ``{"eval": i, "x": [...], "weights": [...], "knobs": {...}, "objective": f, ...}``,
appended and fsynced as soon as it is computed, so a killed search loses at most the evaluation
in progress. A torn last line (killed mid-write) is dropped on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import LorikitError, UsageError
from ..utils.atomic import mark_output_dir

LOG_NAME = "search_log.jsonl"
BEST = "best.json"  # beside the merged adapter: the best weights and knobs
PLOT = "search.png"  # objective vs evaluation
FORMAT = 1


class EvalLog:
    """The evaluation records of one search, backed by an append-only JSONL file."""

    def __init__(self, path: Path, header: dict[str, Any], records: list[dict[str, Any]]):
        self.path = path
        self.header = header
        self.records = records

    @classmethod
    def open(cls, path: str | os.PathLike, header: dict[str, Any], fresh: bool = False) -> "EvalLog":
        """The log at ``path``: its records when its header equals ``header``; refused when it differs.

        ``fresh`` starts an empty log whatever the file holds (the caller owns the file).
        """
        path = Path(path)
        header = json.loads(json.dumps({"format": FORMAT, **header}, default=str))
        if fresh or not path.exists():
            return cls(path, header, [])
        lines = path.read_text().splitlines()
        if not lines:
            return cls(path, header, [])
        try:
            found = json.loads(lines[0]).get("header")
        except (json.JSONDecodeError, AttributeError):
            found = None
        if not isinstance(found, dict):
            raise LorikitError(f"{path}: first line is not a search header; pass --overwrite to start afresh")
        if found != header:
            key = next(k for k in sorted(set(found) | set(header)) if found.get(k) != header.get(k))
            raise UsageError(f"{path}: logged by a search with other settings ({key}: {found.get(key)!r}, now "
                             f"{header.get(key)!r}); pass --overwrite to start afresh")
        records = []
        for number, line in enumerate(lines[1:], 2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # torn by a kill mid-write: that evaluation is redone
                    break
                raise LorikitError(f"{path}:{number}: not valid JSON; pass --overwrite to start afresh") from None
            if record.get("eval") != len(records):
                raise LorikitError(f"{path}:{number}: evaluation {record.get('eval')} where {len(records)} was "
                                   "expected; pass --overwrite to start afresh")
            records.append(record)
        return cls(path, header, records)

    def append(self, record: dict[str, Any]) -> None:
        """Add one evaluation (rewriting the file first if it is new or ends in a torn line)."""
        record = {"eval": len(self.records), **record}
        if not self.path.parent.exists():
            # the log lives in --out until the result replaces the folder: mark it as ours
            self.path.parent.mkdir(parents=True)
            mark_output_dir(self.path.parent)
        if not self.records or not self._clean():
            self._rewrite()
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records.append(record)

    def _clean(self) -> bool:
        try:
            return len(self.path.read_text().splitlines()) == len(self.records) + 1
        except OSError:
            return False

    def _rewrite(self) -> None:
        text = "".join(json.dumps(x) + "\n" for x in [{"header": self.header}, *self.records])
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)
