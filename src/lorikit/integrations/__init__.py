"""LoRI and OSRM for any Hugging Face / PEFT training script (see docs/integrations.md).

- ``get_lori_model(model, lora_config, method="lori-d"|"lori-s", seed=..., mask=...)`` → a PeftModel
- ``LoriCallback`` for ``transformers.Trainer`` / TRL's ``SFTTrainer``
- ``extract_masks(adapter_or_model, sparsity)`` → LoRI-S masks from a trained LoRI-D adapter
- ``collect_osrm_stats(model, dataloader)`` and ``initialize_osrm_weights(peft_model, stats, task=...)``
"""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the command line's
# --help and configs stay free of torch / transformers / PEFT
_EXPORTS = {
    "LoriCallback": "callback", "extract_masks": "masks", "save_mask": "masks", "collect_osrm_stats": "osrm",
    "initialize_osrm_weights": "osrm", "finalize_lori": "peft_lori", "get_lori_model": "peft_lori",
    "lori_info": "peft_lori", "save_lori_adapter": "peft_lori", "write_lori_metadata": "peft_lori",
    "data_fingerprint_seed": "seeds", "task_seed": "seeds",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["LoriCallback", "collect_osrm_stats", "data_fingerprint_seed", "extract_masks", "finalize_lori",
           "get_lori_model", "initialize_osrm_weights", "lori_info", "save_lori_adapter", "save_mask", "task_seed",
           "write_lori_metadata"]
