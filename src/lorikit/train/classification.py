"""Sequence classification (GLUE-style): data, batches and loss for ``--head classification``.

Rows carry one or two text fields (``text``, ``sentence``, ``sentence1`` + ``sentence2``, ...: read
by ``lorikit.data.classification.row_text``) and ``label``. K = ``num_labels``:
K ≥ 2 → integer labels in [0, K), loss = cross-entropy; K = 1 → float targets (regression, e.g.
STS-B), loss = squared error. The model is a ``*ForSequenceClassification``: encoders pool their
first token; decoders (Llama) score the last real (non-pad) token — transformers' own pooling,
so batches are right-padded with the pad id. The head is trained in full and saved in the
adapter through PEFT's ``modules_to_save`` (task_type SEQ_CLS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.classification import row_text
from ..data.loading import load_rows
from ..data.tokenize import encode, pad_right
from ..errors import LorikitError
from ..models.heads import HEAD_NAMES, head_modules

__all__ = ["HEAD_NAMES", "ClassificationExample", "classification_loss_sum", "collate_classification", "encode",
           "head_modules", "load_classification_data", "row_label", "row_text"]

@dataclass
class ClassificationExample:
    input_ids: list[int]
    label: float | int


def row_label(row: dict, where: str, num_labels: int) -> float | int:
    if "label" not in row or row["label"] is None:
        raise LorikitError(f"{where}: missing field 'label' for --head classification")
    value = row["label"]
    if num_labels == 1:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise LorikitError(f"{where}: field 'label' is {value!r}, expected a number (--num-labels 1)") from None
        if not math.isfinite(out):
            raise LorikitError(f"{where}: field 'label' is {value!r}, expected a finite number")
        return out
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        raise LorikitError(f"{where}: field 'label' is {value!r}, expected an integer class in [0, {num_labels})")
    label = int(value)
    if not 0 <= label < num_labels:
        raise LorikitError(f"{where}: field 'label' is {label}, outside [0, {num_labels}) (--num-labels {num_labels})")
    return label


def load_classification_data(spec: str, tok, num_labels: int, max_length: int = 128, limit: int | None = None,
                             split: str = "train", seed: int = 0) -> list[ClassificationExample]:
    rows, where = load_rows(spec, split, seed=seed)
    if not rows:
        raise LorikitError(f"{where}: no rows")
    if limit is not None:
        rows = rows[:limit]
    line_of = (lambda i: f"{where}:{i + 1}") if where.endswith(".jsonl") else (lambda i: f"{where}: row {i + 1}")
    out = []
    for i, row in enumerate(rows):
        first, second = row_text(row, line_of(i))
        out.append(ClassificationExample(encode(tok, first, second, max_length), row_label(row, line_of(i), num_labels)))
    return out


def collate_classification(batch: list[ClassificationExample], pad_id: int, num_labels: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels (long for K ≥ 2, float for K = 1)."""
    ids, mask = pad_right([b.input_ids for b in batch], pad_id)
    dtype = torch.float32 if num_labels == 1 else torch.long
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([b.label for b in batch], dtype=dtype)}


def classification_loss_sum(model, batch: dict[str, torch.Tensor], num_labels: int) -> tuple[torch.Tensor, int]:
    """(sum of per-example losses, number of examples): CE for K ≥ 2, squared error for K = 1."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"]
    if num_labels == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float(), reduction="sum"), labels.shape[0]
    return F.cross_entropy(logits, labels, reduction="sum"), labels.shape[0]
