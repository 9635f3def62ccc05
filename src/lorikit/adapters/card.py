"""A model card (README.md) for an adapter folder, filled from its ``lorikit.json``.

PEFT's ``save_pretrained`` writes a template full of '[More Information Needed]'. This card says
what the adapter is — method and its paper (from the method registry), base model, data, seed,
hyper-parameters, final loss, evaluation scores when known — under the metadata block the Hub
reads, built with ``huggingface_hub``'s
``ModelCardData``: ``library_name: peft``, ``base_model`` (a Hub id), ``tags`` (``lorikit`` and the
method), ``datasets`` (Hub data sets trained on), ``pipeline_tag`` and, for evaluation scores, a
``model-index`` (``EvalResult``s), which the Hub shows as the model's results.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from ..utils.atomic import atomic_write_bytes
from ..utils.registry import reference
from .methods import find_method

CARD = "README.md"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_HYPER_SHOWN = ("lr", "learning_rate", "batch_size", "per_device_train_batch_size", "grad_accum",
                "gradient_accumulation_steps", "epochs", "num_train_epochs", "max_steps", "lr_scheduler",
                "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "bf16")


def hub_id(name: Any) -> str | None:
    """``name`` when it is a Hub repo id (the Hub accepts only those as base model / data set), else None."""
    text = str(name or "").partition("?")[0]
    return text if _HUB_ID.match(text) and not Path(text).exists() else None


def method_tag(meta: dict[str, Any]) -> str:
    return str(meta.get("method", "lora")).replace(":", "-")


def method_paper(meta: dict[str, Any]) -> str | None:
    """The reference of the method that trained the adapter, from the method registry (a merge
    records its own method's in ``merge.paper``)."""
    method = find_method(meta.get("method"))
    return reference(method) if method is not None and method.paper else None


def eval_results(scores: dict[str, Any] | None, task_type: str) -> list:
    """``EvalResult``s of ``{name: score}`` or ``{name: {"score", "metric", "data"}}`` (finite numbers only)."""
    from huggingface_hub import EvalResult

    results = []
    for name, value in sorted((scores or {}).items()):
        entry = value if isinstance(value, dict) else {"score": value}
        score = entry.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            continue
        results.append(EvalResult(task_type=task_type, dataset_type=hub_id(entry.get("data")) or str(name),
                                  dataset_name=str(name), metric_type=str(entry.get("metric") or "accuracy"),
                                  metric_value=float(score)))
    return results


def card_data(meta: dict[str, Any], config: dict[str, Any], scores: dict[str, Any] | None = None):
    """The card's metadata block as ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import ModelCardData

    base = config.get("base_model_name_or_path") or meta.get("base_model")
    pipeline = "text-classification" if config.get("task_type") == "SEQ_CLS" else "text-generation"
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    datasets = sorted({d for d in [hub_id(data.get("source"))] if d})
    results = eval_results(scores, pipeline)
    return ModelCardData(
        library_name="peft", base_model=hub_id(base), tags=sorted({"lorikit", "lora", "peft", method_tag(meta)}),
        pipeline_tag=pipeline, datasets=datasets or None, eval_results=results or None,
        model_name=f"{method_tag(meta)} adapter of {base}" if results else None)


def _rows(pairs) -> list[str]:
    return ["| setting | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in pairs if v is not None]


def card_text(meta: dict[str, Any], config: dict[str, Any], scores: dict[str, Any] | None = None) -> str:
    front = card_data(meta, config, scores).to_yaml().strip()
    method = meta.get("method", "unknown")
    base = config.get("base_model_name_or_path") or meta.get("base_model")
    data = meta.get("data") or {}
    train = meta.get("train") or {}
    hyper = meta.get("hyperparameters") or {}
    mask = meta.get("mask") or {}
    lines = [f"---\n{front}\n---", "", f"# {method} adapter", "",
             f"A PEFT LoRA adapter of `{base}` trained with [lorikit](https://pypi.org/project/lorikit/) "
             f"(method `{method}`). Load it with `PeftModel.from_pretrained(base_model, PATH)`; "
             "`lorikit.json` beside this card holds the full record.", "", "## Adapter", ""]
    paper = (meta.get("merge") or {}).get("paper") or method_paper(meta)
    lines += _rows([("method", method), ("paper", paper), ("base model", base), ("base weights", meta.get("base_weights")),
                    ("rank", meta.get("rank", config.get("r"))),
                    ("alpha", meta.get("alpha", config.get("lora_alpha"))),
                    ("target modules", ", ".join(map(str, meta.get("target_modules") or config.get("target_modules") or []))),
                    ("seed of A", meta.get("seed")), ("A init", meta.get("a_init")),
                    ("mask kept fraction", mask.get("kept_fraction")), ("mask file", mask.get("file"))])
    lines += ["", "## Training", ""]
    lines += _rows([("data", data.get("source") if isinstance(data, dict) else data),
                    ("rows", data.get("rows") if isinstance(data, dict) else None),
                    *[(k, hyper.get(k)) for k in _HYPER_SHOWN if k in hyper],
                    ("steps", train.get("steps")), ("final loss", train.get("final_loss"))])
    if scores:
        shown = [(k, v.get("score") if isinstance(v, dict) else v) for k, v in sorted(scores.items())]
        lines += ["", "## Evaluation", ""] + _rows(shown)
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | os.PathLike, meta: dict[str, Any] | None = None,
                     scores: dict[str, Any] | None = None) -> Path | None:
    """Write ``folder/README.md`` from its lorikit.json (or ``meta``) and adapter_config.json."""
    folder = Path(folder)
    if meta is None:
        path = folder / "lorikit.json"
        if not path.is_file():
            return None
        meta = json.loads(path.read_text())
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    scores = scores if scores is not None else meta.get("eval")
    from huggingface_hub import ModelCard

    out = folder / CARD
    card = ModelCard(card_text(meta, config, scores))  # parses the metadata back: a malformed block fails here
    atomic_write_bytes(out, str(card).encode())
    return out
