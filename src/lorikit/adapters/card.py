"""A model card (README.md) for an adapter folder, filled from its ``lorikit.json``.

PEFT's ``save_pretrained`` writes a template full of '[More Information Needed]'. This card says
what the adapter is — method, base model, data, seed, hyper-parameters, final loss, evaluation
scores when known — under the metadata block PEFT and the Hub read (``library_name: peft``,
``base_model``, ``tags``, ``pipeline_tag``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..utils.atomic import atomic_write_bytes

CARD = "README.md"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_HYPER_SHOWN = ("lr", "learning_rate", "batch_size", "per_device_train_batch_size", "grad_accum",
                "gradient_accumulation_steps", "epochs", "num_train_epochs", "max_steps", "lr_scheduler",
                "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "bf16")


def card_metadata(meta: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    base = config.get("base_model_name_or_path") or meta.get("base_model")
    method = str(meta.get("method", "lora"))
    data: dict[str, Any] = {"library_name": "peft", "tags": sorted({"lorikit", "lora", method.replace(":", "-")})}
    if base and _HUB_ID.match(str(base)) and not Path(str(base)).exists():
        data["base_model"] = str(base)  # the Hub accepts only repo ids here, not local folders
    task_type = config.get("task_type")
    data["pipeline_tag"] = "text-classification" if task_type == "SEQ_CLS" else "text-generation"
    return data


def _rows(pairs) -> list[str]:
    return ["| setting | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in pairs if v is not None]


def card_text(meta: dict[str, Any], config: dict[str, Any], scores: dict[str, Any] | None = None) -> str:
    front = yaml.safe_dump(card_metadata(meta, config), sort_keys=False).strip()
    method = meta.get("method", "unknown")
    base = config.get("base_model_name_or_path") or meta.get("base_model")
    data = meta.get("data") or {}
    train = meta.get("train") or {}
    hyper = meta.get("hyperparameters") or {}
    mask = meta.get("mask") or {}
    lines = [f"---\n{front}\n---", "", f"# {method} adapter", "",
             f"A PEFT LoRA adapter of `{base}` trained with [lorikit](https://pypi.org/project/lorikit/) "
             f"(method `{method}`). Load it with `PeftModel.from_pretrained(base_model, PATH)`; "
             "`lorikit.json` beside this card holds the full record.", "", "## Adapter", ""]
    paper = (meta.get("merge") or {}).get("paper")  # a merge records its method's reference
    lines += _rows([("method", method), ("paper", paper), ("base model", base), ("base weights", meta.get("base_weights")),
                    ("rank", meta.get("rank", config.get("r"))),
                    ("alpha", meta.get("alpha", config.get("lora_alpha"))),
                    ("target modules", ", ".join(map(str, meta.get("target_modules") or config.get("target_modules") or []))),
                    ("seed of A", meta.get("seed")), ("A init", meta.get("a_init")),
                    ("mask kept fraction", mask.get("kept_fraction")), ("mask file", mask.get("file"))])
    lines += ["", "## Training", ""]
    lines += _rows([("data", data.get("source") if isinstance(data, dict) else data),
                    ("rows", data.get("rows") if isinstance(data, dict) else None),
                    *[(k, hyper.get(k)) for k in _HYPER_SHOWN if k in hyper],
                    ("steps", train.get("steps")), ("final loss", train.get("final_loss"))])
    if scores:
        lines += ["", "## Evaluation", ""] + _rows(sorted(scores.items()))
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | os.PathLike, meta: dict[str, Any] | None = None,
                     scores: dict[str, Any] | None = None) -> Path | None:
    """Write ``folder/README.md`` from its lorikit.json (or ``meta``) and adapter_config.json."""
    folder = Path(folder)
    if meta is None:
        path = folder / "lorikit.json"
        if not path.is_file():
            return None
        meta = json.loads(path.read_text())
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    scores = scores if scores is not None else meta.get("eval")
    out = folder / CARD
    atomic_write_bytes(out, card_text(meta, config, scores).encode())
    return out
