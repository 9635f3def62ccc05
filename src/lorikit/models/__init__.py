"""Base models by name: the embedded SmolLM2, a tiny random Llama, local folders and Hub ids."""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the command line's
# --help and configs stay free of torch / transformers / PEFT
_EXPORTS = {
    "resolve_device": "device", "MODEL_ALIASES": "loading", "ModelBundle": "loading", "load_model": "loading",
    "load_tokenizer": "loading",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["MODEL_ALIASES", "ModelBundle", "load_model", "load_tokenizer", "resolve_device"]
