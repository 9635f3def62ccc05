"""``lorikit eval``: load the model (+ adapter), generate or classify, score, write one JSON file.

The result file holds ``task``, ``metric``, ``score`` and the other metrics, ``settings`` (the
whole EvalConfig plus the resolved decoding), and ``records``: one per example with prompt,
response, extracted answer, gold and correct. It is written atomically (temporary file + rename).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import LorikitError, UsageError
from .config import EvalConfig


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_adapter(cfg: EvalConfig, workdir: str) -> str | None:
    """The adapter folder to load: ``--adapter`` itself, or one task materialised from an EMR merge."""
    if not cfg.emr_task:
        return cfg.adapter
    try:
        from ..merge.emr import materialize_emr
    except ImportError as exc:
        raise LorikitError("--emr-task: EMR merging (lorikit.merge.emr.materialize_emr) is not available "
                           "in this installation") from exc
    made = materialize_emr(cfg.adapter, cfg.emr_task)
    if hasattr(made, "save"):  # an AdapterState: write it where PEFT can load it
        target = Path(workdir) / f"emr-{cfg.emr_task}"
        made.save(target)
        return str(target)
    return str(made)


def load_for_eval(cfg: EvalConfig, workdir: str, head: str = "causal-lm", num_labels: int | None = None):
    """(model ready for inference, tokenizer, bundle); the adapter stays unmerged unless --merge-for-speed."""
    from ..adapters.build import load_peft
    from ..models import load_model

    bundle = load_model(cfg.model, dtype=cfg.dtype, device=_device(cfg.device), head=head, num_labels=num_labels)
    model = bundle.model
    adapter = resolve_adapter(cfg, workdir)
    if adapter:
        model = load_peft(model, adapter)
        if cfg.merge_for_speed:
            model = model.merge_and_unload()
    model.eval()
    return model, bundle.tokenizer, bundle


def _rows(cfg: EvalConfig, task: str) -> tuple[list[dict], str]:
    from ..data.loading import load_rows
    from .tasks import humaneval_rows

    if task == "humaneval" and not cfg.data:
        rows, where = humaneval_rows()
    elif not cfg.data:
        raise UsageError(f"--data: required for --task {cfg.task}")
    else:
        rows, where = load_rows(cfg.data, split="test", n_builtin=cfg.builtin_rows, seed=cfg.seed)
    return (rows[: cfg.limit] if cfg.limit else rows), where


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    """Run the evaluation ``cfg`` describes, write ``cfg.out`` (if set) and return the result."""
    if cfg.out and Path(cfg.out).is_dir():  # before the --overwrite hint: it would not help
        raise UsageError(f"--out {cfg.out}: is a folder; give a results file path such as {Path(cfg.out) / 'result.json'}")
    if cfg.out and Path(cfg.out).exists() and not cfg.overwrite:
        raise UsageError(f"--out {cfg.out}: file exists (pass --overwrite to replace it)")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="lorikit-eval-") as workdir:
        if cfg.harness == "lm-eval":
            from .harness import run_lm_eval

            result = run_lm_eval(cfg, workdir)
        elif cfg.task == "classification":
            from .classify import evaluate_classification

            result = evaluate_classification(cfg, workdir, progress)
        else:
            result = _evaluate_generation(cfg, workdir, progress)
    result["settings"]["seconds"] = round(time.time() - t0, 2)
    if cfg.out:
        from ..utils.atomic import atomic_write_json

        atomic_write_json(cfg.out, result)
    return result


def _evaluate_generation(cfg: EvalConfig, workdir: str, progress: bool) -> dict[str, Any]:
    from . import tasks as T
    from .generate import GenerationConfig, generate
    from .sandbox import SandboxConfig, check_sandbox

    task = T.builtin_task(cfg.data) if cfg.task == "builtin" else cfg.task
    rows, where = _rows(cfg, task)
    items = T.load_items(task, rows, where)
    spec = T.TASKS[task]
    gen_cfg = GenerationConfig(max_new_tokens=cfg.max_new_tokens or spec.max_new_tokens, batch_size=cfg.batch_size,
                               do_sample=cfg.sampling, temperature=cfg.temperature, top_p=cfg.top_p,
                               num_samples=cfg.samples, stop=list(cfg.stop if cfg.stop is not None else spec.stop),
                               seed=cfg.seed)
    sandbox_cfg = SandboxConfig(sandbox=cfg.sandbox, timeout=cfg.timeout, memory_mb=cfg.memory_mb,
                                workers=cfg.workers) if task == "humaneval" else None
    if sandbox_cfg:
        check_sandbox(sandbox_cfg)  # before the model is loaded: refuse early, not after generation
    model, tokenizer, bundle = load_for_eval(cfg, workdir)
    stats: dict[str, Any] = {}
    t_gen = time.time()
    completions = generate(model, tokenizer, [it.prompt for it in items], gen_cfg, progress=progress, stats=stats)
    gen_seconds = time.time() - t_gen
    if task == "humaneval":
        metrics, records = T.score_humaneval(items, completions, cfg.pass_k, sandbox_cfg, progress)
    elif task == "safety":
        metrics, records = T.score_safety(items, completions, cfg.refusal_keywords)
    else:
        metrics, records = T.score_answers(task, items, completions)
    settings = {**dataclasses.asdict(cfg), "scored_as": task, "data_source": where,
                "base_model_id": bundle.base_model_id, "generation": dataclasses.asdict(gen_cfg),
                "generated_tokens": stats.get("new_tokens"), "generation_seconds": round(gen_seconds, 2)}
    if sandbox_cfg:
        settings["sandbox"] = dataclasses.asdict(sandbox_cfg)
    return {"task": task, "n": len(items), **metrics, "settings": settings, "records": records}


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
