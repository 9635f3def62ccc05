"""``lorikit eval --adapters A=FOLDER B=FOLDER ...``: several adapters scored on the same items in one pass.

The base model is loaded once with every adapter attached (``mixed.load_adapters``); each item's
prompt is decoded once per adapter, and the rows of all adapters share batches, each row naming its
adapter (PEFT's ``adapter_names=``; ``base`` = no adapter). Every adapter gets the result a separate
``lorikit eval --adapter`` would give (greedy decoding is row-independent: tested), under
``adapters.NAME`` of the one results file, with its own prompt template (``--template auto`` reads
each adapter's ``lorikit.json``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ..data.templates import apply_template
from ..errors import UsageError
from ..models import load_model
from .items import generation_config
from . import generate as decoding
from .loading import eval_device, eval_rows, resolve_template
from .mixed import BASE, generate_mixed, load_adapters
from .tasks.base import TaskSpec, load_items

BASE_NAME = "base"


def named_adapters(specs: list[str]) -> dict[str, str | None]:
    """``NAME=FOLDER`` (or ``FOLDER``, named by its last path part) → {name: folder}; ``base`` → None."""
    named: dict[str, str | None] = {}
    for spec in specs:
        if spec in (BASE_NAME, f"{BASE_NAME}="):
            spec = f"{BASE_NAME}="
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not name or (not path and name != BASE_NAME):
            raise UsageError(f"--adapters {spec!r}: expected NAME=FOLDER")
        if name == BASE_NAME and path:
            raise UsageError(f"--adapters {spec!r}: the name {BASE_NAME!r} means the model without an adapter; "
                             f"give this adapter another name")
        if name in named:
            raise UsageError(f"--adapters: the name {name!r} is given twice")
        named[name] = None if name == BASE_NAME and not path else path
    return named


def evaluate_mixed(cfg, spec: TaskSpec, progress: bool = True) -> dict[str, Any]:
    """One result per adapter of ``cfg.adapters`` on task ``spec``, decoded together."""
    if spec.run is not None:
        raise UsageError(f"--adapters: --task {spec.name} has its own route; evaluate its adapters one by one")
    named = named_adapters(cfg.adapters)
    rows, where = eval_rows(cfg, spec.default_rows)
    items = load_items(spec.name, rows, where)
    context = spec.prepare(cfg) if spec.prepare else None
    templates = {name: resolve_template(cfg.template, path) for name, path in named.items()}
    bundle = load_model(cfg.model, dtype=cfg.dtype, device=eval_device(cfg.device))
    loaded = {name: path for name, path in named.items() if path is not None}
    model = load_adapters(bundle.model, loaded) if loaded else bundle.model
    per_adapter = {name: apply_template(templates[name], bundle.tokenizer, items) for name in named}
    prompts = [it.prompt for name in named for it in per_adapter[name]]
    rows_of = [name if named[name] is not None else BASE for name in named for _ in items]
    gen_cfg, t0 = generation_config(cfg, spec), time.time()
    texts = generate_mixed(model, bundle.tokenizer, prompts, rows_of, gen_cfg, progress) if loaded else None
    if texts is None:  # only the base model: no PeftModel to route rows through
        texts = [outs[0] for outs in decoding.generate(model, bundle.tokenizer, prompts, gen_cfg, progress=progress)]
    seconds = round(time.time() - t0, 2)
    results, summary = {}, {}
    for k, name in enumerate(named):
        completions = [[t] for t in texts[k * len(items):(k + 1) * len(items)]]
        metrics, records = spec.score(per_adapter[name], completions, cfg, context, progress)
        results[name] = {"adapter": named[name], "template": templates[name], "n": len(items), **metrics,
                         "records": records}
        summary[name] = {key: v for key, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    settings = {**dataclasses.asdict(cfg), "scored_as": spec.name, "data_source": where,
                "base_model_id": bundle.base_model_id, "generation": dataclasses.asdict(gen_cfg),
                "generation_seconds": seconds, "mixed_batches": True}
    return {"task": spec.name, "n": len(items), "results": summary, "adapters": results, "settings": settings}
