"""OSRM (docs/methods.md#osrm): per-task input statistics, orthogonal-subspace A, adapter transform."""

from .init import apply_osrm_init, cov_basis, mean_basis, osrm_projection
from .collect import InputRecorder, StatsConfig, collect_stats
from .reader import OsrmStats
from .transform import TransformConfig, project_update, transform

__all__ = ["InputRecorder", "OsrmStats", "StatsConfig", "TransformConfig", "apply_osrm_init", "collect_stats",
           "cov_basis", "mean_basis", "osrm_projection", "project_update", "transform"]
