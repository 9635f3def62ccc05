"""LoRI and OSRM for any Hugging Face / PEFT training script (see docs/integrations.md).

- ``get_lori_model(model, lora_config, method="lori-d"|"lori-s", seed=..., mask=...)`` → a PeftModel
- ``LoriCallback`` for ``transformers.Trainer`` / TRL's ``SFTTrainer``
- ``extract_masks(adapter_or_model, sparsity)`` → LoRI-S masks from a trained LoRI-D adapter
- ``collect_osrm_stats(model, dataloader)`` and ``initialize_osrm_weights(peft_model, stats, task=...)``
"""

from .callback import LoriCallback
from .masks import extract_masks, save_mask
from .osrm import collect_osrm_stats, initialize_osrm_weights
from .peft_lori import finalize_lori, get_lori_model, lori_info, save_lori_adapter, write_lori_metadata
from .seeds import data_fingerprint_seed, task_seed

__all__ = ["LoriCallback", "collect_osrm_stats", "data_fingerprint_seed", "extract_masks", "finalize_lori",
           "get_lori_model", "initialize_osrm_weights", "lori_info", "save_lori_adapter", "save_mask", "task_seed",
           "write_lori_metadata"]

