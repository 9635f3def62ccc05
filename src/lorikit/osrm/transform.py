"""Move an existing update into OSRM's subspace (docs/methods.md#osrm, the reference's post_OSRM.py).

Input: a LoRA adapter (ΔW = s B A per module) or a fully fine-tuned model folder (ΔW = W_ft − W_0
per target module, W_0 from the statistics' base model). With A_o = A_osrm (r × d, rows c·
orthonormal, c the ``--osrm-scale`` factor, A_o = c U):

    A' = c U,   B' = ΔW Uᵀ / (s c)   ⇒   s B' A' = ΔW Uᵀ U = ΔW P,

with U the orthonormal OSRM rows and P = Uᵀ U the orthogonal projector onto A_o's row space: the best rank-≤r approximation of
ΔW whose input side is OSRM's subspace. The reference computes B' = ΔW A_oᵀ without the 1/s, so
its transformed adapter applies s × the projected update (and it drops the classifier head);
lorikit divides by s and copies every non-LoRA tensor (``modules_to_save`` heads) unchanged.
Reported per module and overall: kept = ‖ΔW P‖² / ‖ΔW‖².
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import torch

from ..adapters.state import ADAPTER_CONFIG, PEFT_PREFIX, AdapterState, LoraModule, load_adapter
from ..errors import LorikitError, UsageError
from ..models import load_model
from ..models.heads import HEAD_NAMES
from ..models.loading import SMOLLM2, SMOLLM2_HUB_ID
from ..utils.outputs import guard_output
from .config import TransformConfig  # noqa: F401 (public here too)
from .init import osrm_projection, parse_scale
from .reader import OsrmStats

log = logging.getLogger(__name__)


def project_update(delta: torch.Tensor, basis: torch.Tensor, scaling: float, factor: float = 1.0):
    """(A', B', kept ‖ΔW P‖², total ‖ΔW‖²) for one module, ``basis`` = U with orthonormal rows; float64.

    ‖ΔW P‖² = ‖ΔW Uᵀ‖² because U has orthonormal rows.
    """
    delta = delta.to(torch.float64)
    basis = basis.to(torch.float64)
    projected = delta @ basis.T  # out × r
    return (factor * basis, projected / (scaling * factor), float((projected * projected).sum()),
            float((delta * delta).sum()))


def _full_model_deltas(folder: Path, base_name: str, target_suffixes: set[str]):
    """(module, ΔW) for every Linear whose name ends in a recorded suffix; plus the head tensors."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    is_cls = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if is_cls:
        from transformers import AutoModelForSequenceClassification

        tuned = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    else:
        from transformers import AutoModelForCausalLM

        tuned = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    base = load_model(base_name).model.state_dict()
    tuned_sd = tuned.state_dict()
    deltas = {}
    for name, mod in tuned.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in target_suffixes:
            key = f"{name}.weight"
            if key not in base or base[key].shape != tuned_sd[key].shape:
                raise LorikitError(f"{folder}: weight {key} has no counterpart of the same shape in base {base_name}")
            deltas[name] = tuned_sd[key].to(torch.float64) - base[key].to(torch.float64)
    heads = {}
    if is_cls:
        for head in HEAD_NAMES:
            for key, value in tuned_sd.items():
                if key.startswith(head + "."):
                    heads[f"{PEFT_PREFIX}{key}"] = value.contiguous()
    return deltas, heads, is_cls


def _adapter_source(source: Path, cfg: TransformConfig, stats: OsrmStats) -> dict:
    """Items (module, ΔW, scaling, rank), config and extra tensors of a LoRA adapter source."""
    state = load_adapter(source)
    stats.check_model(state.base_model)
    if cfg.base_model is not None:
        raise UsageError("--base-model: only for a fully fine-tuned source (a LoRA adapter names its base)")
    items = []
    for name, m in state.modules().items():
        rank = cfg.rank or m.rank
        scaling = cfg.alpha / rank if cfg.alpha is not None else m.scaling
        items.append((name, m.delta(torch.float64), scaling, rank))
    meta = {"source_kind": "lora", **({"source_meta": state.meta} if state.meta else {})}
    return {"items": items, "config": dict(state.config), "extra": state.other_tensors(), "meta": meta}


def _full_source(source: Path, cfg: TransformConfig, stats: OsrmStats) -> dict:
    """The same for a fully fine-tuned model folder: ΔW = tuned − base, at ``--rank`` (default 8)."""
    from peft import LoraConfig

    base_name = cfg.base_model or stats.model
    stats.check_model(_base_id(base_name))
    suffixes = {m.rsplit(".", 1)[-1] for m in stats.modules}
    deltas, extra, is_cls = _full_model_deltas(source, base_name, suffixes)
    rank = cfg.rank or 8
    alpha = cfg.alpha if cfg.alpha is not None else 2.0 * rank
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(suffixes),
                        task_type="SEQ_CLS" if is_cls else "CAUSAL_LM",
                        modules_to_save=sorted({k[len(PEFT_PREFIX):].split(".")[0] for k in extra}) or None
                        ).to_dict()
    config = json.loads(json.dumps(config, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))
    config["base_model_name_or_path"] = stats.model
    items = [(name, d, alpha / rank, rank) for name, d in deltas.items()]
    return {"items": items, "config": config, "extra": extra, "meta": {"source_kind": "full"}}


def transform(cfg: TransformConfig, report: Callable[[str], None] = log.info) -> tuple[Path, dict]:
    """Write the transformed adapter; returns (folder, {module: kept fraction, 'overall': ...}).

    ``report`` receives one line per module and a total (default: the ``lorikit.osrm`` logger)."""
    guard_output(cfg.out, [cfg.source, cfg.osrm_stats, cfg.base_model])
    stats = OsrmStats(cfg.osrm_stats)
    stats.check_task(cfg.task)
    source = Path(cfg.source)
    if not source.is_dir():
        raise UsageError(f"{cfg.source}: not a folder (give a LoRA adapter or a fine-tuned model folder)")
    if (source / ADAPTER_CONFIG).is_file():
        found = _adapter_source(source, cfg, stats)
    elif (source / "config.json").is_file():
        found = _full_source(source, cfg, stats)
    else:
        raise UsageError(f"{cfg.source}: neither a LoRA adapter ({ADAPTER_CONFIG}) nor a model folder (config.json)")
    kept_total = norm_total = 0.0
    fractions: dict[str, float] = {}
    modules: list[LoraModule] = []
    for name, delta, scaling, rank in found["items"]:
        A_osrm = osrm_projection(stats, cfg.task, name, rank, cfg.osrm_mode)
        if A_osrm.shape[1] != delta.shape[1]:
            raise LorikitError(f"module {name}: input size {delta.shape[1]}, statistics have {A_osrm.shape[1]}")
        factor = parse_scale(cfg.osrm_scale, delta.shape[1], rank)
        A, B, kept, total = project_update(delta, A_osrm, scaling, factor)
        modules.append(LoraModule(name, A.float(), B.float(), scaling))
        fractions[name] = kept / total if total > 0 else 1.0
        kept_total += kept
        norm_total += total
        report(f"{name}: kept {fractions[name]:.4f} of ||dW||^2")
    fractions["overall"] = kept_total / norm_total if norm_total > 0 else 1.0
    report(f"overall: kept {fractions['overall']:.4f} of ||dW||^2 ({len(modules)} modules)")
    meta = {"method": "osrm-transform", "source": str(source), "source_kind": found["meta"]["source_kind"],
            "base_model": found["config"].get("base_model_name_or_path"),
            "init": {"kind": "osrm-transform", "stats": cfg.osrm_stats, "task": cfg.task, "mode": cfg.osrm_mode,
                     "scale": cfg.osrm_scale, "kept_fraction": fractions}}
    if "source_meta" in found["meta"]:
        meta["source_meta"] = found["meta"]["source_meta"]
    out_state = AdapterState.from_modules(modules, found["config"], meta=meta, extra_tensors=found["extra"])
    return out_state.save(cfg.out, cfg.overwrite), fractions


def _base_id(name: str) -> str:
    """The id ``load_model(name)`` records (the alias smollm2-135m stands for its Hub id)."""
    return SMOLLM2_HUB_ID if name == SMOLLM2 else name
