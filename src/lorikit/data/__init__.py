"""Data: files, built-in synthetic tasks and Hub datasets → prompt/response examples → token batches."""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the command line's
# --help and configs stay free of torch / transformers / PEFT
_EXPORTS = {
    "BUILTIN_TASKS": "builtin", "FORMATS": "formats", "Example": "formats", "carve_spec": "loading",
    "load_examples": "loading", "load_rows": "loading", "read_rows": "loading", "split_dev": "loading",
    "IGNORE": "tokenize", "collate": "tokenize", "tokenize": "tokenize", "tokenize_example": "tokenize",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["BUILTIN_TASKS", "FORMATS", "Example", "IGNORE", "carve_spec", "collate", "load_examples", "load_rows",
           "read_rows", "split_dev", "tokenize", "tokenize_example"]
