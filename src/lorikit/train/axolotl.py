"""axolotl config files for ``lorikit train --config``: the common keys, mapped to lorikit's settings.

An axolotl YAML (``base_model``, ``datasets``, ``adapter: lora``, ``sequence_len``, ...) is read as
the run it describes; keys lorikit shares with Hugging Face (``learning_rate``, ``lora_r``,
``output_dir``, ...) go through the usual spellings. A ``lori:`` block holds lorikit's own settings
(``method: lori-d``, ``mask``, ``init: osrm``, ``osrm_stats``, ...). Keys are sorted into:

- translated (``TRANSLATED``): set the lorikit setting they mean;
- no effect on what is trained (``NO_EFFECT``: attention kernels, logging names, cache paths):
  accepted and logged as ignored;
- off only (``OFF_ONLY``): features lorikit does not have (sample packing, DeepSpeed, 8-bit
  loading, ...), accepted only when unset or false, otherwise refused by name.

Any other key is a lorikit / Hugging Face key or an error naming it (``config_file.py``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..adapters.methods import find_method
from ..errors import UsageError

log = logging.getLogger(__name__)

# axolotl dataset types -> lorikit row formats (``--format``) with the same loss; other types are
# refused by name. chat_template with its defaults (a ``messages`` list, loss on the assistant turns)
# is TRL's conversational format; completion (a ``text`` field, loss on every token) is TRL's text.
DATASET_TYPES = {"alpaca": "alpaca", "chat_template": "messages", "completion": "text"}
TORCH_ADAMW = ("adamw_torch", "adamw_torch_fused", "adamw_hf")  # the AdamW lorikit runs (torch.optim.AdamW)
NO_EFFECT = frozenset({
    "flash_attention", "sdp_attention", "xformers_attention", "flash_attn_cross_entropy", "flash_attn_rms_norm",
    "flash_attn_fuse_qkv", "flash_attn_fuse_mlp", "dataset_prepared_path", "strict", "debug", "local_rank",
    "pad_to_sequence_len", "eval_sample_packing", "wandb_entity", "wandb_watch", "wandb_name", "wandb_log_model",
    "wandb_run_id", "loss_watchdog_threshold", "loss_watchdog_patience", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_prefetch_factor", "eval_max_new_tokens", "eval_table_size",
})
OFF_ONLY = frozenset({
    "load_in_8bit", "sample_packing", "lora_model_dir", "lora_fan_in_fan_out", "peft_use_dora", "peft_use_rslora",
    "deepspeed", "fsdp", "fsdp_config", "gptq", "relora_steps", "unfrozen_parameters", "lora_modules_to_save",
    "saves_per_epoch", "hub_model_id", "wandb_project", "trust_remote_code", "torch_compile",
    "neftune_noise_alpha", "auto_resume_from_checkpoints", "tf32", "test_datasets", "pretraining_dataset",
    "rl", "chat_template",
})
LORI_KEYS = ("method", "mask", "from", "from_adapter", "init", "osrm_stats", "task", "osrm_mode", "osrm_scale",
             "a_init", "freeze")

Entry = tuple[str, str, Any]  # (key as written, lorikit / HF key it sets, value)


def _unset(value: Any) -> bool:
    return value is None or value is False or value in ("", [], {})


def _datasets(where: str, value: Any) -> list[Entry]:
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        count = len(value) if isinstance(value, list) else 0
        raise UsageError(f"{where}: datasets: lorikit trains on one data set per run; give a list of one "
                         f"mapping with path and type (got {count or type(value).__name__})")
    item = dict(value[0])
    path, kind = item.pop("path", None), item.pop("type", None)
    if not path:
        raise UsageError(f"{where}: datasets[0].path: required (a .json/.jsonl file or a Hub data set)")
    if item.pop("split", "train") != "train":
        raise UsageError(f"{where}: datasets[0].split: lorikit trains on the train split of a Hub data set")
    if item:
        raise UsageError(f"{where}: datasets[0].{sorted(item)[0]}: not supported by lorikit (path and type only)")
    if not isinstance(kind, str) or kind not in DATASET_TYPES:
        raise UsageError(f"{where}: datasets[0].type {kind!r}: not supported by lorikit "
                         f"(supported: {', '.join(DATASET_TYPES)})")
    return [("datasets", "data", str(path)), ("datasets", "format", DATASET_TYPES[kind])]


def _adapter(where: str, value: Any) -> list[Entry]:
    """``lora`` (or a lorikit method name) trains that method; ``qlora`` is LoRA on a 4-bit base."""
    quantised = value == "qlora"
    method = find_method(str(value)[1:] if quantised else value)
    if method is None:
        raise UsageError(f"{where}: adapter {value!r}: not supported by lorikit (lora or qlora; LoRI and OSRM "
                         "go in a lori: block)")
    return [("adapter", "method", method.name)] + ([("adapter", "load_in_4bit", True)] if quantised else [])


def _val_set_size(where: str, value: Any) -> list[Entry]:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise UsageError(f"{where}: val_set_size {value!r}: lorikit takes a share of the data in [0, 1)")
    return [("val_set_size", "dev_fraction", float(value))] if value else []


def _evals_per_epoch(where: str, value: Any) -> list[Entry]:
    """axolotl's dev evaluations per epoch: one is lorikit's --eval-strategy epoch."""
    if value in (None, 0):
        return []
    if value != 1 or isinstance(value, bool):
        raise UsageError(f"{where}: evals_per_epoch {value!r}: lorikit evaluates once per epoch (evals_per_epoch: "
                         "1) or every N optimizer steps (eval_steps: N)")
    return [("evals_per_epoch", "eval_strategy", "epoch")]


def _train_on_inputs(where: str, value: Any) -> list[Entry]:
    if value:
        raise UsageError(f"{where}: train_on_inputs: true is not supported (lorikit's loss is on the response "
                         "tokens only)")
    return []


def _optimizer(where: str, value: Any) -> list[Entry]:
    if value not in TORCH_ADAMW:
        raise UsageError(f"{where}: optimizer {value!r}: not supported; lorikit trains with torch AdamW "
                         f"({', '.join(TORCH_ADAMW)})")
    return []


def _bf16(where: str, value: Any) -> list[Entry]:
    if value == "auto":  # axolotl: bf16 where the GPU supports it
        import torch

        value = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return [("bf16", "bf16", value)]


def _target_linear(where: str, value: Any) -> list[Entry]:
    return [("lora_target_linear", "target_modules", ["all-linear"])] if value else []


def _named(key: str, target: str) -> Callable[[str, Any], list[Entry]]:
    return lambda where, value: [(key, target, value)]


def _auto_class(key: str, suffix: str) -> Callable[[str, Any], list[Entry]]:
    """tokenizer_type / model_type: lorikit loads with the Auto classes, which pick the same class."""
    def check(where: str, value: Any) -> list[Entry]:
        if value is not None and not str(value).endswith(suffix):
            raise UsageError(f"{where}: {key} {value!r}: not supported (lorikit loads Auto{suffix} classes)")
        return []
    return check


TRANSLATED: dict[str, Callable[[str, Any], list[Entry]]] = {
    "base_model": _named("base_model", "model"), "datasets": _datasets, "adapter": _adapter,
    "lora_target_linear": _target_linear, "sequence_len": _named("sequence_len", "max_length"),
    "micro_batch_size": _named("micro_batch_size", "batch_size"), "num_epochs": _named("num_epochs", "epochs"),
    "val_set_size": _val_set_size, "evals_per_epoch": _evals_per_epoch, "train_on_inputs": _train_on_inputs,
    "optimizer": _optimizer, "bf16": _bf16,
    "tokenizer_type": _auto_class("tokenizer_type", "Tokenizer"),
    "model_type": _auto_class("model_type", "ForCausalLM"),
}


def _lori(where: str, value: Any) -> list[Entry]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: lori: expected a mapping of lorikit settings (method, mask, init, ...)")
    unknown = sorted(set(value) - set(LORI_KEYS))
    if unknown:
        raise UsageError(f"{where}: lori.{unknown[0]}: not a LoRI / OSRM setting (known: {', '.join(LORI_KEYS)})")
    return [(f"lori.{key}", key, v) for key, v in value.items()]


def axolotl_entries(where: str, raw: dict[str, Any]) -> list[Entry]:
    """Every key of a config mapping as (key as written, lorikit / HF key, value); axolotl keys
    translated, ignored or refused, lorikit and Hugging Face keys passed through."""
    entries: list[Entry] = []
    for key, value in raw.items():
        name = str(key)
        if name in TRANSLATED:
            entries += TRANSLATED[name](where, value)
        elif name == "lori":
            entries += _lori(where, value)
        elif name in NO_EFFECT:
            log.info("%s: %s ignored (it does not change what lorikit trains)", where, name)
        elif name in OFF_ONLY:
            if not _unset(value) and not (name == "chat_template" and value == "tokenizer_default"):
                raise UsageError(f"{where}: {name}: {value!r} is not supported by lorikit (remove it or set it "
                                 "to false)")
        elif name == "special_tokens" and (_unset(value) or (isinstance(value, dict) and set(value) == {"pad_token"})):
            log.info("%s: special_tokens.pad_token ignored (padded positions carry no loss)", where)
        else:
            entries.append((name, name, value))
    # ``adapter: lora`` names PEFT's LoRA; a lori: block's method (lori-d, lori-s) refines it
    if any(src == "lori.method" for src, _, _ in entries):
        entries = [e for e in entries if not (e[0] == "adapter" and e[1] == "method")]
    return entries


def known_keys() -> set[str]:
    """Every axolotl key this module knows (for 'did you mean')."""
    return set(TRANSLATED) | NO_EFFECT | OFF_ONLY | {"lori", "special_tokens"}
