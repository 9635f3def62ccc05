"""``--task classification``: a sequence-classification head (+ adapter) on GLUE-like rows.

Rows carry one or two text fields (read by ``lorikit.data.classification``, the reader training
uses; or ``--text-fields``) and a ``label`` (integer class, or a float for regression such as
STS-B). The model is ``load_model(name, head="classification", num_labels=K)`` with the adapter
applied (the adapter must carry its trained head, e.g. PEFT ``modules_to_save=["score"]``).

    prediction = argmax(logits)          (K >= 2)
               = logits[0]               (K = 1, regression)
    metrics    = accuracy, F1 (K = 2), Matthews correlation   |   Pearson, Spearman (regression)

The metric functions come from ``lorikit.eval.scorers.classification``. The head scores every
class in one forward, so ``--scoring`` does not apply.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ...data.classification import detect_text_fields, row_text
from ...errors import LorikitError, UsageError
from .base import TaskSpec, line_namer, register


def _labels(rows: list[dict], field: str, line_of) -> list[float]:
    labels = []
    for i, row in enumerate(rows):
        value = row.get(field) if isinstance(row, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LorikitError(f"{line_of(i)}: field {field!r} must be a number (class index or regression "
                               f"target), got {value!r}")
        labels.append(value)
    return labels


def _num_labels(cfg, labels: list[float], where: str) -> int:
    regression = any(isinstance(v, float) and not float(v).is_integer() for v in labels)
    num_labels = cfg.num_labels or (1 if regression else max(2, int(max(labels)) + 1))
    if num_labels > 1 and regression:
        raise UsageError(f"{where}: labels are not integers but --num-labels is {num_labels} (use 1 for regression)")
    if num_labels > 1 and (min(labels) < 0 or max(labels) >= num_labels):
        raise LorikitError(f"{where}: labels must lie in 0..{num_labels - 1} (found {int(min(labels))}..{int(max(labels))})")
    return num_labels


def _metrics(preds: list, gold: list, num_labels: int) -> tuple[str, dict[str, float]]:
    from ..scorers import classification as M

    if num_labels == 1:
        return "pearson", {"pearson": M.pearson(preds, gold), "spearman": M.spearman(preds, gold)}
    metrics = {"accuracy": M.accuracy(preds, gold), "matthews": M.matthews(preds, gold)}
    if num_labels == 2:
        metrics["f1"] = M.f1(preds, gold)
    return "accuracy", metrics


def evaluate_classification(cfg, workdir: str, progress: bool = True) -> dict[str, Any]:
    # torch and the model loaders load when a task runs: the task registry is listed by --help
    from ..loading import eval_rows, load_for_eval
    from ..scorers import classification as M

    rows, where = eval_rows(cfg)
    line_of = line_namer(where)
    if not isinstance(rows[0], dict) or cfg.label_field not in rows[0]:
        raise LorikitError(f"{line_of(0)}: --task classification needs field {cfg.label_field!r} "
                           f"(or --label-field); the row has {sorted(rows[0]) if isinstance(rows[0], dict) else []}")
    fields = detect_text_fields(rows[0], line_of(0), cfg.text_fields)
    labels = _labels(rows, cfg.label_field, line_of)
    num_labels = _num_labels(cfg, labels, where)
    texts = [row_text(row, line_of(i), fields) for i, row in enumerate(rows)]
    model, tokenizer, bundle = load_for_eval(cfg, workdir, head="classification", num_labels=num_labels)
    # Encoded exactly as training encodes rows (train.classification.encode), pairs included.
    logits = M.predict_classification(model, tokenizer, [t if t[1] is not None else t[0] for t in texts],
                                      batch_size=cfg.batch_size, max_length=512)
    regression = num_labels == 1
    preds: list = logits[:, 0].tolist() if regression else logits.argmax(-1).tolist()
    gold = [float(v) for v in labels] if regression else [int(v) for v in labels]
    metric, metrics = _metrics(preds, gold, num_labels)
    records = [{"id": str(next((r[k] for k in ("id", "idx") if r.get(k) is not None), i)),
                "prompt": " ||| ".join(x for x in t if x is not None), "response": None, "extracted": p, "gold": g,
                "correct": (p == g) if not regression else None}
               for i, (r, t, p, g) in enumerate(zip(rows, texts, preds, gold))]
    settings = {**dataclasses.asdict(cfg), "data_source": where, "base_model_id": bundle.base_model_id,
                "text_fields": list(fields), "num_labels": num_labels}
    return {"task": "classification", "n": len(rows), "metric": metric, "score": float(metrics[metric]),
            **{k: float(v) for k, v in metrics.items()}, "settings": settings, "records": records}


SPEC = register(TaskSpec("classification", "accuracy/F1/Matthews or Pearson/Spearman of a classification head",
                         run=evaluate_classification))
