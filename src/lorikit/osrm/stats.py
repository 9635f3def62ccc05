"""Former home of OSRM statistics: collecting is ``osrm/collect.py``, reading ``osrm/reader.py``.

Kept so that ``lorikit.osrm.stats`` imports keep working.
"""

from .collect import (GRAM_BLOCK, GRAM_DTYPES, InputRecorder, StatsConfig, add_upper_gram, body_of, collect_stats,
                      record_task, task_texts, token_batches)
from .reader import FORMAT_VERSION, MANIFEST, OsrmStats

__all__ = ["FORMAT_VERSION", "GRAM_BLOCK", "GRAM_DTYPES", "MANIFEST", "InputRecorder", "OsrmStats", "StatsConfig",
           "add_upper_gram", "body_of", "collect_stats", "record_task", "task_texts", "token_batches"]
