"""``--task classification``: a sequence-classification head (+ adapter) on GLUE-like rows.

Rows carry one or two text fields (``sentence``; ``sentence1``/``sentence2``; ``question``/
``sentence``; ``premise``/``hypothesis``; ``question1``/``question2``; or ``--text-fields``) and a
``label`` (integer class, or a float for regression such as STS-B). The model is
``load_model(name, head="classification", num_labels=K)`` with the adapter applied (the adapter
must carry its trained head, e.g. PEFT ``modules_to_save=["score"]``).

    prediction = argmax(logits)          (K >= 2)
               = logits[0]               (K = 1, regression)
    metrics    = accuracy, F1 (K = 2), Matthews correlation   |   Pearson, Spearman (regression)

The metric functions come from ``lorikit.eval.scorers.classification``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import LorikitError, UsageError
from .config import EvalConfig

TEXT_FIELD_SETS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                   ("question", "sentence"), ("question", "passage"), ("sentence",), ("text",))


def _metrics_module():
    try:
        from .scorers import classification
    except ImportError as exc:
        raise LorikitError("--task classification: lorikit.eval.scorers.classification is not available "
                           "in this installation") from exc
    return classification


def detect_text_fields(row: dict, where: str, explicit: list[str] | None) -> tuple[str, ...]:
    if explicit:
        missing = [f for f in explicit if f not in row]
        if missing:
            raise LorikitError(f"{where}: --text-fields {', '.join(missing)} not in the row (fields: {sorted(row)})")
        return tuple(explicit)
    for fields in TEXT_FIELD_SETS:
        if set(fields) <= set(row):
            return fields
    raise LorikitError(f"{where}: --task classification needs text fields (one of "
                       f"{', '.join('/'.join(f) for f in TEXT_FIELD_SETS)}, or --text-fields); the row has {sorted(row)}")


def _labels(rows: list[dict], field: str, line_of) -> list[float]:
    labels = []
    for i, row in enumerate(rows):
        value = row.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LorikitError(f"{line_of(i)}: field {field!r} must be a number (class index or regression "
                               f"target), got {value!r}")
        labels.append(value)
    return labels


@torch.no_grad()
def evaluate_classification(cfg: EvalConfig, workdir: str, progress: bool = True) -> dict[str, Any]:
    import dataclasses

    from .runner import _rows, load_for_eval

    rows, where = _rows(cfg, "classification")
    if not rows:
        raise LorikitError(f"{where}: no rows")
    line_of = (lambda i: f"{where}:{i + 1}") if where.endswith(".jsonl") else (lambda i: f"{where}: row {i + 1}")
    if not isinstance(rows[0], dict) or cfg.label_field not in rows[0]:
        raise LorikitError(f"{line_of(0)}: --task classification needs field {cfg.label_field!r} "
                           f"(or --label-field); the row has {sorted(rows[0]) if isinstance(rows[0], dict) else []}")
    fields = detect_text_fields(rows[0], line_of(0), cfg.text_fields)
    labels = _labels(rows, cfg.label_field, line_of)
    regression = any(isinstance(v, float) and not float(v).is_integer() for v in labels)
    num_labels = cfg.num_labels or (1 if regression else max(2, int(max(labels)) + 1))
    if num_labels == 1:
        regression = True
    elif regression:
        raise UsageError(f"{where}: labels are not integers but --num-labels is {num_labels} (use 1 for regression)")
    elif min(labels) < 0 or max(labels) >= num_labels:
        raise LorikitError(f"{where}: labels must lie in 0..{num_labels - 1} (found {int(min(labels))}..{int(max(labels))})")
    metrics_mod = _metrics_module()

    model, tokenizer, bundle = load_for_eval(cfg, workdir, head="classification", num_labels=num_labels)
    texts = [[str(row.get(f, "")) for f in fields] for row in rows]
    # Encoded exactly as training encodes rows (train.classification.encode), pairs included.
    logits = metrics_mod.predict_classification(model, tokenizer, [tuple(t) if len(t) == 2 else t[0] for t in texts],
                                                batch_size=cfg.batch_size, max_length=512)
    preds: list[float] = logits[:, 0].tolist() if regression else logits.argmax(-1).tolist()

    gold = [float(v) for v in labels] if regression else [int(v) for v in labels]
    if regression:
        metrics = {"pearson": metrics_mod.pearson(preds, gold), "spearman": metrics_mod.spearman(preds, gold)}
        metric = "pearson"
    else:
        metrics = {"accuracy": metrics_mod.accuracy(preds, gold), "matthews": metrics_mod.matthews(preds, gold)}
        if num_labels == 2:
            metrics["f1"] = metrics_mod.f1(preds, gold)
        metric = "accuracy"
    records = [{"prompt": " ||| ".join(t), "response": None, "extracted": p, "gold": g,
                "correct": (p == g) if not regression else None} for t, p, g in zip(texts, preds, gold)]
    settings = {**dataclasses.asdict(cfg), "data_source": where, "base_model_id": bundle.base_model_id,
                "text_fields": list(fields), "num_labels": num_labels}
    return {"task": "classification", "n": len(rows), "metric": metric, "score": float(metrics[metric]),
            **{k: float(v) for k, v in metrics.items()}, "settings": settings, "records": records}
