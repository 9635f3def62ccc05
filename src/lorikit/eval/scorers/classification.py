"""GLUE-style classification / regression metrics (docs/methods.md#evaluation), plain torch, no sklearn/scipy.

- accuracy = mean(pred == gold)
- F1 (binary, positive class 1) = 2·TP / (2·TP + FP + FN); ``average="macro"`` averages per class
- Matthews correlation (multi-class form, Gorodkin 2004) from the confusion matrix C:
  (c·s − Σ_k p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)), c = trace, s = total, p/t = column/row sums;
  0 when a denominator is 0 (scikit-learn's convention)
- Pearson r; Spearman ρ = Pearson r of the ranks (ties share their average rank)
- CoLA → Matthews, STS-B → (Pearson + Spearman) / 2, MRPC/QQP → accuracy and F1, others → accuracy.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ...data.tokenize import pad_right
from ...errors import LorikitError
from ...train.classification import encode


def _ints(values) -> torch.Tensor:
    return torch.as_tensor(list(values) if not isinstance(values, torch.Tensor) else values).long().flatten()


def _floats(values) -> torch.Tensor:
    return torch.as_tensor(list(values) if not isinstance(values, torch.Tensor) else values,
                           dtype=torch.float64).flatten()


def _same_length(pred: torch.Tensor, gold: torch.Tensor) -> None:
    if pred.numel() != gold.numel():
        raise LorikitError(f"{pred.numel()} predictions for {gold.numel()} references")
    if pred.numel() == 0:
        raise LorikitError("no predictions to score")


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    p, g = _ints(pred), _ints(gold)
    _same_length(p, g)
    return float((p == g).double().mean())


def f1(pred: Sequence[int], gold: Sequence[int], average: str = "binary", positive: int = 1) -> float:
    p, g = _ints(pred), _ints(gold)
    _same_length(p, g)
    classes = [positive] if average == "binary" else sorted(set(p.tolist()) | set(g.tolist()))
    scores = []
    for c in classes:
        tp = int(((p == c) & (g == c)).sum())
        fp = int(((p == c) & (g != c)).sum())
        fn = int(((p != c) & (g == c)).sum())
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def matthews(pred: Sequence[int], gold: Sequence[int]) -> float:
    p, g = _ints(pred), _ints(gold)
    _same_length(p, g)
    k = int(max(p.max(), g.max())) + 1
    cm = torch.zeros(k, k, dtype=torch.float64)
    cm.index_put_((g, p), torch.ones_like(g, dtype=torch.float64), accumulate=True)
    t, pc = cm.sum(1), cm.sum(0)
    c, s = cm.trace(), cm.sum()
    num = c * s - (pc * t).sum()
    den = torch.sqrt((s * s - (pc * pc).sum()) * (s * s - (t * t).sum()))
    return 0.0 if den == 0 else float(num / den)


def pearson(pred: Sequence[float], gold: Sequence[float]) -> float:
    x, y = _floats(pred), _floats(gold)
    _same_length(x, y)
    x, y = x - x.mean(), y - y.mean()
    den = torch.sqrt((x * x).sum() * (y * y).sum())
    return 0.0 if den == 0 else float((x * y).sum() / den)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks; tied values get the mean of the ranks they span."""
    order = torch.argsort(values, stable=True)
    sorted_vals = values[order]
    ranks = torch.empty_like(values, dtype=torch.float64)
    i, n = 0, values.numel()
    while i < n:
        j = i
        while j + 1 < n and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(pred: Sequence[float], gold: Sequence[float]) -> float:
    x, y = _floats(pred), _floats(gold)
    _same_length(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def classification_metrics(pred, gold, num_labels: int) -> dict[str, float]:
    """Every metric that applies: regression (K = 1) → Pearson, Spearman and their mean;
    classes → accuracy, Matthews, F1 (binary for K = 2, macro otherwise)."""
    if num_labels == 1:
        r, rho = pearson(pred, gold), spearman(pred, gold)
        return {"pearson": r, "spearman": rho, "pearson_spearman": (r + rho) / 2}
    return {"accuracy": accuracy(pred, gold), "matthews": matthews(pred, gold),
            "f1": f1(pred, gold, "binary" if num_labels == 2 else "macro")}


@torch.no_grad()
def predict_classification(model, tok, texts: Sequence[str | tuple[str, str | None]], batch_size: int = 16,
                           max_length: int = 128) -> torch.Tensor:
    """Logits [n, K] of a sequence classifier (PEFT-wrapped or not); right padding, the model's pooling."""
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out = []
    was_training = model.training
    model.eval()
    for i in range(0, len(texts), batch_size):
        chunk = [t if isinstance(t, tuple) else (t, None) for t in texts[i:i + batch_size]]
        input_ids, mask = pad_right([encode(tok, a, b, max_length) for a, b in chunk], pad)
        out.append(model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)
