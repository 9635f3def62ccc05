"""Base models by name: the embedded SmolLM2, a tiny random Llama, local folders and Hub ids."""

from .device import resolve_device
from .loading import MODEL_ALIASES, ModelBundle, load_model, load_tokenizer

__all__ = ["MODEL_ALIASES", "ModelBundle", "load_model", "load_tokenizer", "resolve_device"]
