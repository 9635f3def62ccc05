"""What every evaluation route loads: the model (+ adapter, merged for speed by default) and the rows."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..adapters.build import load_peft
from ..data.loading import load_rows
from ..errors import LorikitError, UsageError
from ..merge.emr import materialize_emr
from ..models import load_model


def eval_device(name: str) -> str:
    """``--device``: ``auto`` is CUDA when there is one, else the CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_adapter(cfg, workdir: str) -> str | None:
    """The adapter folder to load: ``--adapter`` itself, or one task materialised from an EMR merge."""
    if not cfg.emr_task:
        return cfg.adapter
    made = materialize_emr(cfg.adapter, cfg.emr_task)
    if hasattr(made, "save"):  # an AdapterState: write it where PEFT can load it
        target = Path(workdir) / f"emr-{cfg.emr_task}"
        made.save(target)
        return str(target)
    return str(made)


def resolve_template(template: str, adapter: str | None) -> str:
    """``--template``; ``auto`` = the template the adapter records in its ``lorikit.json``, else reference."""
    if template != "auto":
        return template
    meta_file = Path(adapter) / "lorikit.json" if adapter else None
    if meta_file is None or not meta_file.is_file():
        return "reference"
    try:
        data = json.loads(meta_file.read_text()).get("data") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise LorikitError(f"{meta_file}: not readable as JSON ({exc})") from None
    template = data.get("template", "reference") if isinstance(data, dict) else "reference"
    if template not in ("reference", "chat"):
        raise LorikitError(f"{meta_file}: data.template {template!r} is not reference or chat")
    return template


def load_for_eval(cfg, workdir: str, head: str = "causal-lm", num_labels: int | None = None):
    """(model ready for inference, tokenizer, bundle). The model is loaded for this evaluation only,
    so merging the adapter into its weights (``--merge-for-speed``, the default) touches nothing else."""
    bundle = load_model(cfg.model, dtype=cfg.dtype, device=eval_device(cfg.device), head=head, num_labels=num_labels)
    model = bundle.model
    adapter = resolve_adapter(cfg, workdir)
    if adapter:
        model = load_peft(model, adapter)
        if cfg.merge_for_speed:
            model = model.merge_and_unload()
    model.eval()
    return model, bundle.tokenizer, bundle


def eval_rows(cfg, default=None) -> tuple[list[dict], str]:
    """(rows, where) of ``--data`` (test split of built-in tasks), limited to ``--limit``; ``default()``
    supplies the rows of a task that has its own default data (humaneval) when ``--data`` is absent."""
    if not cfg.data:
        if default is None:
            raise UsageError(f"--data: required for --task {cfg.task}")
        rows, where = default()
    else:
        rows, where = load_rows(cfg.data, split="test", n_builtin=cfg.builtin_rows, seed=cfg.seed)
    if not rows:
        raise LorikitError(f"{where}: no rows")
    return (rows[: cfg.limit] if cfg.limit else rows), where
