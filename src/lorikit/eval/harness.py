"""``--harness lm-eval``: EleutherAI lm-evaluation-harness tasks on lorikit's model loading.

The model is loaded the lorikit way (``smollm2-135m`` from the embedded GGUF via its cached float32
folder, ``tiny-random-llama``, a folder or Hub id; adapter applied unmerged, EMR materialised) and
handed to lm-eval's ``HFLM`` as an instance, then ``lm_eval.simple_evaluate`` runs the tasks.
``--lm-eval-include`` adds a folder of custom task YAMLs (for instance a task over a local JSONL).

The equivalent stock command line (no lorikit involved) is::

    lm_eval --model hf --model_args pretrained=FOLDER,peft=ADAPTER,dtype=float32 \\
            --tasks NAME --include_path TASKS_DIR
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import LorikitError, UsageError
from .config import EvalConfig
from .loading import load_for_eval


def run_lm_eval(cfg: EvalConfig, workdir: str) -> dict[str, Any]:
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise LorikitError("--harness lm-eval: the lm-eval package is not installed (pip install 'lorikit[eval]')") from exc
    manager = TaskManager(include_path=cfg.lm_eval_include) if cfg.lm_eval_include else TaskManager()
    unknown = [t for t in cfg.lm_eval_tasks if not manager.match_tasks([t])]
    if unknown:
        hint = f" in lm-eval or {cfg.lm_eval_include}" if cfg.lm_eval_include else " (custom tasks: --lm-eval-include DIR)"
        raise UsageError(f"--lm-eval-tasks: unknown task(s) {', '.join(unknown)}{hint}")
    model, tokenizer, bundle = load_for_eval(cfg, workdir)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size,
              max_length=getattr(model.config, "max_position_embeddings", None))
    out = lm_eval.simple_evaluate(model=lm, tasks=list(cfg.lm_eval_tasks), limit=cfg.limit, task_manager=manager,
                                  log_samples=True, random_seed=cfg.seed, numpy_random_seed=cfg.seed,
                                  torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed)
    if out is None:  # simple_evaluate returns None on non-zero ranks only
        raise LorikitError("--harness lm-eval: lm-eval returned no results")
    results = {task: {k: v for k, v in metrics.items() if k != "alias"} for task, metrics in out["results"].items()}
    records = []
    for task, samples in (out.get("samples") or {}).items():
        for s in samples:
            records.append({"task": task, "doc_id": s.get("doc_id"), "target": s.get("target"),
                            "response": s.get("filtered_resps"), **{k: v for k, v in s.items() if k in ("acc", "exact_match")}})
    settings = {**dataclasses.asdict(cfg), "base_model_id": bundle.base_model_id,
                "lm_eval_version": getattr(lm_eval, "__version__", None), "n_shot": out.get("n-shot")}
    return {"task": "lm-eval:" + ",".join(cfg.lm_eval_tasks), "n": len(records), "results": results,
            "settings": settings, "records": records}
