"""The LoRA layers PEFT put into a model, by the module path they adapt."""

from __future__ import annotations

# the prefix PeftModel puts before the base model's module paths (also in state dict keys)
PEFT_PREFIX = "base_model.model."


def lora_layers(peft_model, adapter_name: str = "default"):
    """(module path in the base model, PEFT LoRA layer) for every adapted module."""
    from peft.tuners.lora import LoraLayer  # peft loads in seconds: only when a model is adapted

    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            yield (name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name), module
