"""Merging LoRA adapters: cat, linear, task arithmetic, TIES, DARE, magnitude prune, EMR, and in
factor space KnOTS, Core Space, TSV-M, Iso-C and Iso-CTS.

    from lorikit.merge import MergeConfig, merge, Merger, materialize_emr
    merge(MergeConfig(adapters=["runs/code-s", "runs/math-s"], method="ties", density=0.2, out="merged/ties"))
    merge(MergeConfig(adapters=[...], method="knots", inner="ties", density=0.2, out="merged/knots"))
    state = materialize_emr("merged/emr", "code")      # one task of an EMR merge, as an AdapterState

Methods are registered by name (``registry.methods()``); each lives in its own file under
``methods/`` with its formula and declares its parameters. See docs/merge.md.
"""

# The subpackage methods/ is imported before the function ``methods`` is bound below: importing a
# subpackage later would rebind ``lorikit.merge.methods`` to the subpackage, shadowing the function.
from . import methods as _methods_package  # noqa: F401
from .config import MergeConfig
from .core import Merger, check_compatible, in_memory_model, merge
from .emr import EmrFolder, emr_task_deltas, materialize_emr
from .registry import DeltaParams, get_method, methods, register

__all__ = ["DeltaParams", "EmrFolder", "MergeConfig", "Merger", "check_compatible", "emr_task_deltas",
           "get_method", "in_memory_model", "materialize_emr", "merge", "methods", "register"]
