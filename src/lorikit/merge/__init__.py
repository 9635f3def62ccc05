"""Merging LoRA adapters: cat, linear, task arithmetic, TIES, DARE, magnitude prune, EMR, and in
factor space KnOTS, Core Space, TSV-M, Iso-C and Iso-CTS.

    from lorikit.merge import MergeConfig, merge, Merger, materialize_emr
    merge(MergeConfig(adapters=["runs/code-s", "runs/math-s"], method="ties", density=0.2, out="merged/ties"))
    merge(MergeConfig(adapters=[...], method="knots", inner="ties", density=0.2, out="merged/knots"))
    state = materialize_emr("merged/emr", "code")      # one task of an EMR merge, as an AdapterState

Methods are registered by name (``registry.methods()``); each lives in its own file under
``methods/`` with its formula and declares its parameters. See docs/merge.md.
"""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the command line's
# --help and configs stay free of torch / transformers / PEFT
_EXPORTS = {
    "MergeConfig": "config", "Merger": "core", "check_compatible": "core", "in_memory_model": "core",
    "merge": "core", "EmrFolder": "emr", "emr_task_deltas": "emr", "materialize_emr": "emr",
    "DeltaParams": "registry", "get_method": "registry", "methods": "registry", "register": "registry",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["DeltaParams", "EmrFolder", "MergeConfig", "Merger", "check_compatible", "emr_task_deltas",
           "get_method", "in_memory_model", "materialize_emr", "merge", "methods", "register"]
