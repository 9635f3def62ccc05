"""A decoder's KV cache passed under the name its transformers version reads: ``cache`` from 5.2x
(``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` before."""

from __future__ import annotations

import functools
import inspect

import torch

# Below this many shared tokens the second decoder call costs more than the rows save.
MIN_SHARED_PREFIX = 8


@functools.cache
def _cache_arg(forward) -> str:
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def cache_kwargs(model, cache) -> dict:
    """``{name: cache, "use_cache": True}`` for ``model``'s forward (a PEFT model: its base model's);
    the name is looked up once per model class (training asks twice per micro-batch)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_arg(type(base).forward): cache, "use_cache": True}


def new_cache():
    """An empty dynamic KV cache that a forward fills in place."""
    from transformers import DynamicCache

    return DynamicCache()


def common_prefix_length(ids: torch.Tensor, mask: torch.Tensor, limit: int) -> int:
    """Tokens every row of a right-padded batch shares at its start (none of them padding), at most
    ``limit``; 0 when that is fewer than ``MIN_SHARED_PREFIX`` or the batch has one row (nothing to share)."""
    if ids.shape[0] < 2:
        return 0
    same = ((ids == ids[:1]) & (mask == 1)).all(0)
    length = min(int(same.long().cumprod(0).sum()), limit)
    return length if length >= MIN_SHARED_PREFIX else 0


def decode_with_shared_prefix(decoder, ids: torch.Tensor, mask: torch.Tensor, length: int, cache=None) -> torch.Tensor:
    """The decoder's last hidden states at positions ``length:`` of every row; the first ``length``
    tokens, the same in every row, run once and the rows attend to their KV cache repeated over the
    rows (``cache``, filled in place, then holds every row's keys and values for later positions)::

        K, V = decoder(x[0, :P]);  h[:, P:] = decoder(x[:, P:] | K, V)

    The repeat is differentiable: in training every row's gradient reaches the shared pass."""
    cache = new_cache() if cache is None else cache
    rows, total = ids.shape
    if length:
        decoder(input_ids=ids[:1, :length], attention_mask=mask[:1, :length], **cache_kwargs(decoder, cache))
        cache.batch_repeat_interleave(rows)
    positions = torch.arange(length, total, device=ids.device)[None].expand(rows, -1)
    return decoder(input_ids=ids[:, length:], attention_mask=mask, position_ids=positions,
                   **cache_kwargs(decoder, cache)).last_hidden_state
