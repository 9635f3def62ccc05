"""Interference analysis of LoRA adapters: subspace overlap, ΔW cosine, output shift, mask
overlap, score tables, and a visual report (``analyze`` runs them all and writes the report).
"""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the study's tables
# read analysis.stats without loading models, so the command line's --help stays light
_EXPORTS = {
    "PairwiseComparison": "compare", "compare_adapters": "compare", "module_kind": "compare",
    "module_layer": "compare", "delta_inner": "cosine", "delta_norm_sq": "cosine", "module_cosine": "cosine",
    "MaskOverlap": "masks", "jaccard": "masks", "load_mask": "masks", "mask_overlap": "masks",
    "read_train_log": "report", "write_report": "report", "ScoreTable": "scores", "load_scores": "scores",
    "score_table": "scores", "OutputShift": "shift", "output_shift": "shift", "delta_bases": "subspace",
    "module_overlap": "subspace", "overlap": "subspace", "principal_cosines": "subspace",
    "load_sweep": "sweep", "analyze": "analyze", "name_paths": "analyze",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["MaskOverlap", "OutputShift", "PairwiseComparison", "ScoreTable", "analyze", "compare_adapters",
           "delta_bases", "delta_inner", "delta_norm_sq", "jaccard", "load_mask", "load_scores", "load_sweep",
           "mask_overlap", "module_cosine", "module_kind", "module_layer", "module_overlap", "output_shift", "overlap",
           "principal_cosines", "read_train_log", "score_table", "write_report"]
