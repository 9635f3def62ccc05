"""Classification heads of ``*ForSequenceClassification`` models, by their module names."""

from __future__ import annotations

from ..errors import LorikitError

HEAD_NAMES = ("score", "classifier")  # Llama-style decoders, BERT/RoBERTa-style encoders


def head_modules(model) -> list[str]:
    """Names of the classification head's top-level modules (trained in full, saved with the adapter)."""
    names = [n for n, _ in model.named_children() if n in HEAD_NAMES]
    if not names:
        raise LorikitError(f"{type(model).__name__}: no classification head ({' or '.join(HEAD_NAMES)}) found")
    return names
