"""Data: files, built-in synthetic tasks and Hub datasets → prompt/response examples → token batches."""

from .builtin import BUILTIN_TASKS
from .formats import FORMATS, Example
from .loading import carve_spec, load_examples, load_rows, read_rows, split_dev
from .tokenize import IGNORE, collate, tokenize, tokenize_example

__all__ = ["BUILTIN_TASKS", "FORMATS", "Example", "IGNORE", "carve_spec", "collate", "load_examples", "load_rows",
           "read_rows", "split_dev", "tokenize", "tokenize_example"]
