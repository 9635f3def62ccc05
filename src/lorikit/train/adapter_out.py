"""The adapter folder a run writes: final (``<out>``) and intermediate (``<out>/checkpoint-N``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..adapters.card import write_model_card


def write_adapter(folder: Path, peft_model, meta: dict[str, Any], state: dict | None) -> None:
    """The PEFT adapter, ``lorikit.json`` and the model card into ``folder``."""
    peft_model.save_pretrained(str(folder), save_embedding_layers=False,
                               **({"state_dict": state} if state is not None else {}))
    sort_target_modules(folder / "adapter_config.json")
    (folder / "lorikit.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    write_model_card(folder, json.loads((folder / "lorikit.json").read_text()))


def sort_target_modules(config_path: Path) -> None:
    """PEFT keeps target_modules as a set and writes it in hash order, which changes from one
    process to the next; sorted, the same run writes byte-identical files."""
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
