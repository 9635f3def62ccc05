"""The common evaluation route: rows → items → (generate and/or option log-likelihood) → score.

Used for every task whose spec has no route of its own (gsm8k, nlu, exact, safety, humaneval and
``builtin``, which resolves to one of them). ``--scoring generate`` decodes (``generate.py``) and
hands the completions to the task's scorer; ``loglik`` scores the options (``loglik.py``) and
never generates; ``both`` does both and reports their agreement (``choice.merge_both``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ..errors import UsageError
from .choice import choice_items, merge_both, score_loglik
from . import generate as decoding  # called as decoding.generate: tests replace it there
from .generate import GenerationConfig
from ..data.templates import apply_template
from .loading import eval_rows, load_for_eval, resolve_template
from .loglik import option_logliks
from .tasks.base import TaskSpec, load_items


def generation_config(cfg, spec: TaskSpec) -> GenerationConfig:
    """The decoding settings: the flags where given, else the task's defaults."""
    return GenerationConfig(max_new_tokens=cfg.max_new_tokens or spec.max_new_tokens, batch_size=cfg.batch_size,
                            do_sample=cfg.sampling, temperature=cfg.temperature, top_p=cfg.top_p,
                            num_samples=cfg.samples, stop=list(cfg.stop if cfg.stop is not None else spec.stop),
                            seed=cfg.seed)


def _loglik(cfg, items, choices, model, tokenizer, progress: bool, settings: dict) -> tuple[dict, list[dict]]:
    t0, stats = time.time(), {}
    scored = score_loglik(items, option_logliks(model, tokenizer, choices, cfg.batch_size, progress, stats,
                                                cfg.shared_prefix))
    settings.update(loglik_seconds=round(time.time() - t0, 2), loglik_sequences=stats["sequences"])
    return scored


def _generate(cfg, spec, items, model, tokenizer, context, progress: bool, settings: dict) -> tuple[dict, list[dict]]:
    gen_cfg, stats, t0 = generation_config(cfg, spec), {}, time.time()
    completions = decoding.generate(model, tokenizer, [it.prompt for it in items], gen_cfg, progress=progress, stats=stats)
    settings.update(generation=dataclasses.asdict(gen_cfg), generated_tokens=stats.get("new_tokens"),
                    generation_seconds=round(time.time() - t0, 2))
    return spec.score(items, completions, cfg, context, progress)


def evaluate_items(cfg, spec: TaskSpec, workdir: str, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``cfg`` with task ``spec``: everything checkable is checked before the model loads."""
    if cfg.scoring not in spec.scorings:
        raise UsageError(f"--scoring {cfg.scoring}: {cfg.data} is scored as {spec.name}, which has no options "
                         f"to score by log-likelihood")
    rows, where = eval_rows(cfg, spec.default_rows)
    items = load_items(spec.name, rows, where)
    choices = choice_items(items, spec.name) if cfg.scoring != "generate" else None
    context = spec.prepare(cfg) if spec.prepare else None
    template = resolve_template(cfg.template, cfg.adapter)
    model, tokenizer, bundle = load_for_eval(cfg, workdir)
    if template != "reference" or any(it.messages for it in items):  # a conversation is always chat-templated
        items = apply_template(template, tokenizer, items)
        choices = choice_items(items, spec.name) if choices is not None else None
    settings: dict[str, Any] = {**dataclasses.asdict(cfg), "scored_as": spec.name, "data_source": where,
                                "base_model_id": bundle.base_model_id, "template": template}
    if cfg.scoring == "loglik":
        metrics, records = _loglik(cfg, items, choices, model, tokenizer, progress, settings)
    else:
        metrics, records = _generate(cfg, spec, items, model, tokenizer, context, progress, settings)
        if cfg.scoring == "both":
            ll = _loglik(cfg, items, choices, model, tokenizer, progress, settings)
            metrics, records = merge_both((metrics, records), ll, items)
    if spec.context_key and dataclasses.is_dataclass(context):
        settings[spec.context_key] = dataclasses.asdict(context)
    return {"task": spec.name, "n": len(items), **metrics, "settings": settings, "records": records}
