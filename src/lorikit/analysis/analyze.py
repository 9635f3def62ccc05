"""``analyze``: every interference measure of a set of adapters, written as one report folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..adapters.state import load_adapter
from ..errors import UsageError
from ..models import load_model
from ..models.loading import canonical_model_id
from ..utils.atomic import check_output_dir
from .compare import compare_adapters
from .masks import load_mask, mask_overlap
from .report import read_train_log, write_report
from .scores import load_scores, score_table
from .shift import output_shift
from .sweep import load_sweep


def _default_name(path: str) -> str:
    p = Path(path.rstrip("/"))
    if p.parent.name == "masks" and p.parent.parent.name:  # <adapter>/masks/0.9_mask.pt → adapter
        return p.parent.parent.name
    return p.name


def name_paths(items: list[str] | dict[str, str], what: str) -> dict[str, str]:
    """``["runs/a", "b=runs/x"]`` → ``{"a": "runs/a", "b": "runs/x"}`` (names from NAME= or the folder;
    a mask file ``<adapter>/masks/F.pt`` is named after its adapter)."""
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = str(item).partition("=")
        if not sep:
            path, name = str(item), _default_name(str(item))
        if not name or not path:
            raise UsageError(f"{what} {item!r}: expected PATH or NAME=PATH")
        if name in out:
            raise UsageError(f"{what}: name {name!r} given twice (use NAME=PATH to tell them apart)")
        out[name] = path
    return out


def analyze(adapters: list[str] | dict[str, str], out: str | os.PathLike, data: list[str] | dict[str, str] | None = None,
            model: str | None = None, samples: int = 16, max_length: int = 256, masks: list[str] | dict[str, str] | None = None,
            scores: str | None = None, sweep: str | dict | None = None, overwrite: bool = False,
            device: str = "cpu") -> Path:
    """Compare ``adapters`` (paths, NAME=PATH or a dict) and write the report folder ``out``.

    ``data`` (task → --data spec) adds the output-shift matrix (base model = ``model`` or the
    adapters' recorded base model); ``masks`` (mask files) adds the Jaccard matrix; ``scores`` (a
    JSON score file, see ``load_scores``) adds the score table; ``sweep`` (``{series: {weight: score
    or eval output}}`` or a JSON file of it, see ``load_sweep``) adds the merge-weight sweep plot.
    """
    check_output_dir(out, overwrite, inputs=[adapters, data, masks, scores, sweep, model])
    if samples <= 0:
        raise UsageError(f"--samples {samples}: must be positive")
    paths = name_paths(adapters, "adapter")
    if not paths:
        raise UsageError("analyze: give at least one adapter folder")
    states = {name: load_adapter(p) for name, p in paths.items()}
    notes = [f"adapters: " + ", ".join(f"{n} ({s.method}, {p})" for (n, p), s in zip(paths.items(), states.values()))]
    # Read every input first, so a bad mask, score or data file fails before the comparisons run.
    mask_result = None
    if masks:
        mask_paths = name_paths(masks, "--masks")
        mask_result = mask_overlap({n: load_mask(p, flag="--masks") for n, p in mask_paths.items()})
    table = score_table(load_scores(scores)) if scores else None
    sweep_points = load_sweep(sweep) if sweep else None
    shift = None
    if data:
        tasks = name_paths(data, "--data")
        base_ids = {canonical_model_id(s.base_model) for s in states.values()}
        model_name = model or next(iter(base_ids))
        if not model_name:
            raise UsageError("--model: required (the adapters do not record their base model)")
        if model is None and len(base_ids) > 1:
            raise UsageError(f"adapters record different base models ({', '.join(sorted(map(str, base_ids)))}); "
                             "pass --model")
        bundle = load_model(model_name, device=device)
        shift = output_shift(bundle.model, bundle.tokenizer, states, tasks, samples=samples, max_length=max_length)
        notes.append(f"output shift: base model {model_name}, {samples} examples per task")
    comparison = compare_adapters(states)
    logs = {n: read_train_log(p) for n, p in paths.items()}
    return write_report(out, comparison=comparison, shift=shift, masks=mask_result, scores=table,
                        sweep=sweep_points, train_logs=logs, notes=notes, overwrite=overwrite)
