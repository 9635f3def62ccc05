"""``lorikit train --config FILE.yaml|json``: every train flag as a key, or an axolotl config.

Keys are the flag names with ``_`` or ``-`` (``max_steps``, ``max-steps``), their Hugging Face /
TRL / PEFT spellings (``learning_rate``, ``per_device_train_batch_size``, ``lora_r``, ...; table
``HF_ALIASES``) or axolotl's keys (``base_model``, ``datasets``, ``sequence_len``, a ``lori:`` block;
``axolotl.py``). Values are validated against the fields' types with pydantic (``lr: 1e-3`` is a
float although YAML 1.1 reads it as a string); an unknown key is an error naming the file and
the closest known key. Flags given on the command line override the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any

from ..adapters.config import AdapterConfig
from ..errors import LorikitError, UsageError
from ..utils.settings import coerce_settings, did_you_mean
from ..utils.yamlfile import load_yaml
from .axolotl import axolotl_entries
from .axolotl import known_keys as axolotl_keys
from .config import SUBCONFIGS, TrainConfig, split_settings

# Hugging Face TrainingArguments / TRL SFTConfig / PEFT LoraConfig / script-argument name -> lorikit field
HF_ALIASES = {
    "learning_rate": "lr", "output_dir": "out", "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum", "num_train_epochs": "epochs",
    "lr_scheduler_type": "lr_scheduler", "save_steps": "save_every", "save_total_limit": "keep_checkpoints",
    "logging_steps": "log_every", "lora_r": "rank", "r": "rank", "lora_alpha": "alpha",
    "lora_dropout": "dropout", "gradient_checkpointing": "grad_checkpointing",
    "model_name_or_path": "model", "dataset_name": "data", "lora_target_modules": "target_modules",
    "eval_steps": "eval_every", "evaluation_strategy": "eval_strategy", "max_seq_length": "max_length",
    "torch_dtype": "dtype", "resume_from_checkpoint": "resume", "early_stopping_patience": "patience",
}


BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def field_names() -> tuple[set[str], set[str]]:
    """(TrainConfig fields incl. its non-adapter sub-configs' (osrm), AdapterConfig fields) a file or flag may set."""
    run = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli") is not False}
    for name, cls in SUBCONFIGS.items():
        if name != "adapter":
            run |= {f.name for f in dataclasses.fields(cls)}
    return run, {f.name for f in dataclasses.fields(AdapterConfig)}


def nullable_fields() -> set[str]:
    """Fields for which None is a value (``max_steps``, ``dev_limit``, ...), not an unset key."""
    classes = [TrainConfig, *SUBCONFIGS.values()]
    return {name for cls in classes for name, hint in typing.get_type_hints(cls).items()
            if type(None) in typing.get_args(hint)}


def canonical_key(key: str) -> str | None:
    """The lorikit field a key names (flag spelling, underscore spelling or HF alias), or None."""
    run, adapter = field_names()
    name = str(key).lstrip("-").replace("-", "_")
    if name == "from":
        return "from_adapter"
    name = HF_ALIASES.get(name, name)
    return name if name in run | adapter else None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r} (JSON would silently keep only the last one)")
        seen[key] = value
    return seen


def read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    if path.suffix != ".json":
        data = load_yaml(path, f"--config {path}")
    else:
        try:
            data = json.loads(path.read_text(), object_pairs_hook=_refuse_duplicates)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LorikitError(f"--config {path}: unreadable ({first})") from exc
        except ValueError as exc:  # a duplicate key
            raise UsageError(f"--config {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of setting: value, got {type(data).__name__}")
    return data


def load_train_config_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig settings, AdapterConfig settings) of a config file, validated."""
    run, adapter = field_names()
    known = sorted(run | adapter | set(HF_ALIASES) | axolotl_keys())
    where = f"--config {path}"
    nullable = nullable_fields()
    settings: dict[str, tuple[str, Any]] = {}  # lorikit field -> (key as written, value)
    for source, key, value in axolotl_entries(where, read_mapping(path)):
        name = canonical_key(key)
        if name is None:
            raise UsageError(f"{where}: unknown key {source!r}{did_you_mean(source, known)}")
        if value is None and name not in nullable:  # an empty key (axolotl's `fp16:`) is unset
            continue
        if name == "resume" and isinstance(value, str) and value.lower() not in BOOLEAN_WORDS:
            name = "resume_from"  # HF's resume_from_checkpoint: a path, or true/false
        if name in settings:
            raise UsageError(f"{where}: key {source!r} sets {name!r} a second time (also set by "
                             f"{settings[name][0]!r})")
        settings[name] = (source, value)
    run_settings = {k: v for k, (_, v) in settings.items() if k not in adapter}
    adapter_settings = {k: v for k, (_, v) in settings.items() if k in adapter}
    own, parts = split_settings(run_settings)
    coerced = coerce_settings(TrainConfig, own, where)
    for name, cls in SUBCONFIGS.items():
        if name != "adapter":
            coerced.update(coerce_settings(cls, parts[name], where))
    return coerced, coerce_settings(AdapterConfig, adapter_settings, where)


def train_config_from_file(path: str | os.PathLike) -> TrainConfig:
    """The ``TrainConfig`` a config file describes on its own (``lorikit train --config FILE`` without flags)."""
    run_settings, adapter_settings = load_train_config_file(path)
    return TrainConfig.from_flat(**run_settings, **adapter_settings)
