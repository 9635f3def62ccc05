"""``merge_search``: find merge weights on dev data (CMA-ES), then write the merge at the best point.

LoraHub-style (Huang et al., 2024, "LoraHub: Efficient Cross-Task Generalization via Dynamic LoRA
Composition"): the merged adapter's weights w (and optionally a method knob such as TIES' density)
minimise, gradient-free,

    f(w) = (1/T) Σ_t L_t(merge(w)) + l1 · (1/N) Σ_i |w_i|

where L_t is task t's dev objective (mean token NLL of its dev targets, or minus its dev score).
Output folder (written atomically at the end): the merged adapter at the best point (a stock PEFT
adapter, as ``lorikit merge`` writes it), ``best.json`` (best weights and knobs, their per-task
values, the start point's, and the written adapter's own dev values), ``search_log.jsonl`` (every
evaluation; a rerun replays it) and ``search.png`` (objective vs evaluation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters.build import load_peft
from ..adapters.state import ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_WEIGHTS_BIN, LORIKIT_META, \
    load_adapter, resolve_adapter_path
from ..errors import UsageError
from ..eval.loading import eval_device
from ..merge import MergeConfig, Merger, get_method, merge
from ..models import load_model
from ..utils.atomic import atomic_output_dir, atomic_write_json, written_by_lorikit
from ..utils.outputs import guard_output
from .apply import LINEAR_IN_WEIGHTS, MergedWeights, ScaledAdapters
from .cmaes import Space, minimize
from .config import SearchConfig
from .log import BEST, LOG_NAME, PLOT, EvalLog
from .objective import DevSet, evaluate_tasks, nll_dev_set, score_dev_set
from .plot import plot_search

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    out: Path
    best: dict[str, Any]  # the best evaluation's record
    start: dict[str, Any]  # evaluation 0: the start weights
    records: list[dict[str, Any]]
    written: dict[str, Any]  # the written adapter's dev values


def merge_config(cfg: SearchConfig, weights: list[float], knobs: dict[str, float], out: str) -> MergeConfig:
    """The ``lorikit merge`` request of ``cfg``'s method at these weights and knobs."""
    return MergeConfig(adapters=list(cfg.adapters), method=cfg.method, weights=[float(w) for w in weights],
                       rank=cfg.rank, out=out, **{**cfg.fixed_knobs(), **knobs})


def check_request(cfg: SearchConfig) -> dict[str, tuple[float, float]]:
    """Validate ``cfg`` and the merge it asks for (the merge API names any unused knob); the knob ranges."""
    cfg.validate()
    ranges = cfg.knob_ranges()
    if get_method(cfg.method).kind.per_task:
        raise UsageError("--method emr: EMR keeps one update per task and is tuning-free; search another method")
    merge_config(cfg, cfg.start(), {k: (lo + hi) / 2 for k, (lo, hi) in ranges.items()}, out=cfg.out).validate()
    return ranges


def claim_output(out: Path, overwrite: bool) -> bool:
    """May the search use ``out``? True when it must start afresh (``--overwrite``)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not (out / LOG_NAME).is_file():
        raise UsageError(f"--out {out}: folder exists, is not empty and holds no {LOG_NAME} to resume "
                         f"(pass --overwrite to replace it)")
    if out.is_dir() and any(out.iterdir()) and not (out / LOG_NAME).is_file() and not written_by_lorikit(out):
        # Checked before the search, not when its result is written at the end.
        raise UsageError(f"--out {out}: --overwrite replaces only a folder lorikit wrote, and this one was "
                         f"not; remove it yourself or choose another --out")
    return overwrite


def adapter_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_WEIGHTS_BIN):
        if (folder / name).is_file():
            with open(folder / name, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def search_header(cfg: SearchConfig, folders: list[Path], model: str, ranges: dict) -> dict[str, Any]:
    """Every setting that decides which points the search visits (not the budget)."""
    keys = ("dev", "format", "limit", "offset", "objective", "dev_tasks", "max_new_tokens", "method", "bounds", "sigma",
            "popsize", "seed", "l1", "dtype", "batch_size", "max_length", "max_prompt_length")
    return {"adapters": list(cfg.adapters), "adapter_sha256": [adapter_digest(f) for f in folders],
            "model": model, "start": cfg.start(), "fixed": cfg.fixed_knobs(),
            "search": {k: list(v) for k, v in ranges.items()}, **{k: getattr(cfg, k) for k in keys}}


def load_dev_sets(cfg: SearchConfig, names: list[str], tokenizer) -> list[DevSet]:
    if cfg.objective == "score":
        return [score_dev_set(n, spec, task, cfg.limit, cfg.offset)
                for n, spec, task in zip(names, cfg.dev, cfg.score_tasks())]
    return [nll_dev_set(n, spec, tokenizer, cfg.format, cfg.limit, cfg.batch_size, cfg.max_length,
                        cfg.max_prompt_length, cfg.offset) for n, spec in zip(names, cfg.dev)]


def merge_search(cfg: SearchConfig, progress: bool = True, restart_on_mismatch: bool = False) -> SearchResult:
    """Run the search ``cfg`` describes and write its output folder; see the module docstring.

    A rerun on the same ``out`` replays the evaluations logged there (same settings); a log of other
    settings is refused, or discarded with ``restart_on_mismatch`` (recipe stages own their folder).
    """
    ranges = check_request(cfg)
    guard_output(cfg.out, [cfg.adapters, cfg.dev, cfg.model])  # before the search, not at its end
    out = Path(cfg.out)
    fresh = claim_output(out, cfg.overwrite or (restart_on_mismatch and not (out / LOG_NAME).is_file()))
    folders = [resolve_adapter_path(a) for a in cfg.adapters]
    states = [load_adapter(f) for f in folders]
    names = MergeConfig(adapters=list(cfg.adapters)).task_names()
    Merger(states, cfg.method, cfg.start(), labels=list(cfg.adapters))  # compatible, finite
    model_name = cfg.model or states[0].base_model
    if not model_name:
        raise UsageError(f"{cfg.adapters[0]}: adapter_config.json has no base_model_name_or_path; name it with --model")
    header = search_header(cfg, folders, model_name, ranges)
    try:
        eval_log = EvalLog.open(out / LOG_NAME, header, fresh)
    except UsageError:
        if not restart_on_mismatch:
            raise
        eval_log = EvalLog.open(out / LOG_NAME, header, fresh=True)
    if eval_log.records:
        log.info("%s: replaying %d logged evaluation(s)", eval_log.path, len(eval_log.records))
    bundle = load_model(model_name, dtype=cfg.dtype, device=eval_device(cfg.device))
    devs = load_dev_sets(cfg, names, bundle.tokenizer)
    if cfg.method in LINEAR_IN_WEIGHTS:
        applier = ScaledAdapters(bundle.model, [str(f) for f in folders], LINEAR_IN_WEIGHTS[cfg.method])
    else:
        applier = MergedWeights(bundle.model, states, cfg.method,
                                lambda knobs: merge_config(cfg, cfg.start(), knobs, "-").params(), list(cfg.adapters))
    space = Space([f"w:{n}" for n in names] + list(ranges),
                  [cfg.bounds[0]] * len(names) + [r[0] for r in ranges.values()],
                  [cfg.bounds[1]] * len(names) + [r[1] for r in ranges.values()])
    objective = _objective(cfg, applier, bundle.tokenizer, devs, list(ranges))
    x0 = cfg.start() + [(lo + hi) / 2 for lo, hi in ranges.values()]
    records = minimize(objective, space, x0, cfg.sigma, cfg.budget, cfg.seed, eval_log, cfg.popsize, progress)
    del applier, bundle
    return write_output(cfg, out, names, devs, records, eval_log)


def _objective(cfg: SearchConfig, applier, tokenizer, devs: list[DevSet], knob_names: list[str]):
    n = len(cfg.adapters)

    def evaluate(values: list[float]) -> dict[str, Any]:
        weights, knobs = values[:n], dict(zip(knob_names, values[n:]))
        model = applier.apply(weights, {**cfg.fixed_knobs(), **knobs})
        loss, tasks = evaluate_tasks(model, tokenizer, devs, cfg.objective, cfg.batch_size, cfg.max_new_tokens)
        penalty = cfg.l1 * sum(abs(w) for w in weights) / n
        return {"weights": weights, "knobs": knobs, "objective": loss + penalty, "loss": loss, "penalty": penalty,
                "tasks": tasks}

    return evaluate


def write_output(cfg: SearchConfig, out: Path, names: list[str], devs: list[DevSet], records: list[dict],
                 eval_log: EvalLog) -> SearchResult:
    """The merged adapter at the best point + best.json, the log and the plot, renamed into ``out``."""
    best = min(records, key=lambda r: r["objective"])
    with atomic_output_dir(out, overwrite=True) as tmp:
        merge(merge_config(cfg, best["weights"], best["knobs"], str(tmp)))
        written = _evaluate_written(cfg, tmp, devs)
        shutil.copyfile(eval_log.path, tmp / LOG_NAME)
        ylabel = "mean dev NLL" if cfg.objective == "nll" else "− mean dev score"
        plot_search(records, tmp / PLOT, ylabel + (f" + {cfg.l1:g}·mean|w|" if cfg.l1 else ""),
                    f"merge-search: {cfg.method}, {len(names)} adapters, {len(records)} evaluations")
        summary = best_summary(cfg, names, devs, records, best, written)
        atomic_write_json(tmp / BEST, summary)
        meta_path = tmp / LORIKIT_META
        meta = _read_json(meta_path)
        meta["search"] = {k: summary[k] for k in ("objective", "evaluations", "best", "start", "written_adapter")}
        atomic_write_json(meta_path, meta)
    log.info("merge-search: best objective %.6g at evaluation %d", best["objective"], best["eval"])
    return SearchResult(out, best, records[0], records, written)


def _evaluate_written(cfg: SearchConfig, folder: Path, devs: list[DevSet]) -> dict[str, Any]:
    """The dev values of the adapter as written (delta-space merges are truncated by SVD)."""
    bundle = load_model(cfg.model or load_adapter(folder).base_model, dtype=cfg.dtype, device=eval_device(cfg.device))
    model = load_peft(bundle.model, folder)
    loss, tasks = evaluate_tasks(model, bundle.tokenizer, devs, cfg.objective, cfg.batch_size, cfg.max_new_tokens)
    return {"loss": loss, "tasks": tasks}


def best_summary(cfg: SearchConfig, names: list[str], devs: list[DevSet], records: list[dict], best: dict,
                 written: dict) -> dict[str, Any]:
    def point(r: dict) -> dict[str, Any]:
        return {"eval": r["eval"], "weights": dict(zip(names, r["weights"])), "knobs": r["knobs"],
                "objective": r["objective"], "loss": r["loss"], "penalty": r["penalty"], "tasks": r["tasks"]}

    return {"method": cfg.method, "objective": cfg.objective, "weights": list(best["weights"]),
            "knobs": {**cfg.fixed_knobs(), **best["knobs"]}, "evaluations": len(records), "budget": cfg.budget,
            "best": point(best), "start": point(records[0]), "written_adapter": written,
            "dev": {d.name: {"source": d.source, "examples": d.size, "tokens": d.tokens or None} for d in devs},
            "adapters": dict(zip(names, cfg.adapters)), "l1": cfg.l1, "seed": cfg.seed}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def format_summary(result: SearchResult) -> str:
    """A plain-text table: per task, the start and best points' dev values and the written adapter's."""
    best, start, written = result.best, result.start, result.written
    tasks = list(best["tasks"])
    width = max(len(t) for t in tasks + ["objective"])
    lines = [f"{'':<{width}}  {'start':>10}  {'best':>10}  {'written':>10}"]
    for task in tasks:
        lines.append(f"{task:<{width}}  {start['tasks'][task]:>10.4f}  {best['tasks'][task]:>10.4f}  "
                     f"{written['tasks'][task]:>10.4f}")
    lines.append(f"{'objective':<{width}}  {start['objective']:>10.4f}  {best['objective']:>10.4f}  "
                 f"{written['loss'] + best['penalty']:>10.4f}")
    weights = ", ".join(f"{w:.3f}" for w in best["weights"])
    knobs = "".join(f", {k} {v:.3f}" for k, v in best["knobs"].items())
    lines.append(f"best (evaluation {best['eval']} of {len(result.records)}): weights {weights}{knobs}")
    return "\n".join(lines)
