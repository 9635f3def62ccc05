"""OSRM (docs/methods.md#osrm): per-task input statistics, orthogonal-subspace A, adapter transform."""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the command line's
# --help and configs stay free of torch / transformers / PEFT
_EXPORTS = {
    "apply_osrm_init": "init", "cov_basis": "init", "mean_basis": "init", "osrm_projection": "init",
    "InputRecorder": "collect", "StatsConfig": "collect", "collect_stats": "collect", "OsrmStats": "reader",
    "TransformConfig": "transform", "project_update": "transform", "transform": "transform",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["InputRecorder", "OsrmStats", "StatsConfig", "TransformConfig", "apply_osrm_init", "collect_stats",
           "cov_basis", "mean_basis", "osrm_projection", "project_update", "transform"]
