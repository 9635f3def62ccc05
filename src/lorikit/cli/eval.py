"""``lorikit eval``."""

from __future__ import annotations

from ..eval.config import EvalConfig
from ..utils.outputs import guard_output
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a base model and optional adapter on a task",
                       description="Score a model (+ adapter) on GSM8K, NLU, exact-match, safety refusal, "
                                   "HumanEval (sandboxed, needs --allow-code-execution), classification, "
                                   "built-in tasks, or lm-eval tasks (--harness lm-eval).")
    add_dataclass_args(p, EvalConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..eval.runner import evaluate, format_table

    cfg = dataclass_from_args(EvalConfig, args)
    guard_output(cfg.out, [cfg.model, cfg.adapter, cfg.adapters, cfg.data, cfg.refusal_keywords, cfg.lm_eval_include])
    result = evaluate(cfg)
    print(format_table(result))
    if cfg.out:
        print(f"lorikit: results written to {cfg.out}")
    return 0
