"""``lorikit eval``: pick the task's route (``tasks/``), run it, write one JSON file.

The result file holds ``task``, ``metric``, ``score`` and the other metrics, ``settings`` (the
whole EvalConfig plus the resolved decoding), and ``records``: one per example with id, prompt,
response, extracted answer, gold and correct (read back by ``result.read_items``). It is written
atomically (temporary file + rename).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..utils.atomic import atomic_write_json
from ..utils.outputs import guard_output
from .config import EvalConfig
from .harness import run_lm_eval
from .items import evaluate_items
from .mixed_route import evaluate_mixed
from .tasks import TASKS


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    """Run the evaluation ``cfg`` describes, write ``cfg.out`` (if set) and return the result."""
    guard_output(cfg.out, [cfg.model, cfg.adapter, cfg.adapters, cfg.data, cfg.refusal_keywords, cfg.lm_eval_include])
    if cfg.out and Path(cfg.out).is_dir():  # before the --overwrite hint: it would not help
        raise UsageError(f"--out {cfg.out}: is a folder; give a results file path such as {Path(cfg.out) / 'result.json'}")
    if cfg.out and Path(cfg.out).exists() and not cfg.overwrite:
        raise UsageError(f"--out {cfg.out}: file exists (pass --overwrite to replace it)")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="lorikit-eval-") as workdir:
        if cfg.harness == "lm-eval":
            result = run_lm_eval(cfg, workdir)
        else:
            spec = TASKS[cfg.task]
            if spec.resolve is not None:
                spec = TASKS[spec.resolve(cfg)]
            if cfg.adapters is not None:
                result = evaluate_mixed(cfg, spec, progress)
            elif spec.run:
                result = spec.run(cfg, workdir, progress)
            else:
                result = evaluate_items(cfg, spec, workdir, progress)
    result["settings"]["seconds"] = round(time.time() - t0, 2)
    if cfg.out:
        atomic_write_json(cfg.out, result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """A small plain-text table of the headline numbers."""
    skip = {"settings", "records", "task", "metric", "score", "results"}
    rows = [("task", str(result.get("task"))), ("examples", str(result.get("n")))]
    if "metric" in result:
        rows.append((str(result["metric"]), f"{result['score']:.4f}"))
    for key, value in result.items():
        if key in skip or key in ("n", result.get("metric")):
            continue
        rows.append((key, f"{value:.4f}" if isinstance(value, float) else str(value)))
    for task, metrics in (result.get("results") or {}).items():
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append((f"{task} {key}", f"{value:.4f}" if isinstance(value, float) else str(value)))
    width = max(len(k) for k, _ in rows)
    lines = [f"{'':-<{width}}  {'':-<10}"] + [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
