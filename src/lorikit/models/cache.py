"""A decoder's KV cache passed under the name its transformers version reads: ``cache`` from 5.2x
(``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` before."""

from __future__ import annotations

import inspect


def cache_kwargs(model, cache) -> dict:
    """``{name: cache, "use_cache": True}`` for ``model``'s forward (a PEFT model: its base model's)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache, "use_cache": True}


def new_cache():
    """An empty dynamic KV cache that a forward fills in place."""
    from transformers import DynamicCache

    return DynamicCache()
