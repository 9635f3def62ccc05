"""Causal-LM loss on supervised positions.

With ``supervised_only`` the LM head runs only at positions whose next token is a response
token: ``logits = lm_head(h[labels[:, 1:] != -100])``. Prompts are usually much longer than
answers (the NLU format: ~120 prompt tokens for a 5-token answer), and the head is a
(hidden × vocab) matmul per position — for SmolLM2 49,152 columns — so skipping the prompt
positions saves most of the head's compute and the (tokens × vocab) logits memory.

With ``shared_prefix`` the prompt tokens that every row of a micro-batch shares — a template's
preamble ("Below is an instruction that describes a task ... ### Instruction:"), a system prompt —
run once, as a batch of one, and every row attends to their keys and values (the KV cache of that
pass, repeated over the rows) while only its own remaining tokens run through the decoder:

    K, V = decoder(x[0, :P]);  h[:, P:] = decoder(x[:, P:] | K, V)

The function is the same; gradients flow into the shared pass from every row. Without dropout the
loss and gradients equal the full pass up to float rounding (tested). With LoRA dropout the shared
tokens draw one dropout mask for the micro-batch instead of one per row: each row's loss is still
a sample of the same dropout-regularised objective (its expectation is unchanged), but the rows'
noise on the shared tokens is correlated. ``P`` stops before the first response token of any row,
so every loss position is in the rows' own part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.tokenize import IGNORE
from ..models.cache import common_prefix_length, decode_with_shared_prefix


def decoder_and_head(causal_lm):
    """(decoder, LM head) so the head can run at chosen positions only; (None, None) when the model
    post-processes its logits or does not expose the two (then use the full forward)."""
    cfg = causal_lm.config
    # Models that post-process logits (soft-capping, logit scale) need the full forward.
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None, None
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else None
    head = causal_lm.get_output_embeddings()
    if decoder is None or head is None:
        return None, None
    return decoder, head


def shared_prefix_length(batch: dict[str, torch.Tensor]) -> int:
    """Tokens every row of ``batch`` shares at its start (unpadded), stopped before the position
    that predicts the first response token of any row (``common_prefix_length``: 0 when too few to pay)."""
    ids, supervised = batch["input_ids"], batch["labels"] != IGNORE
    first_response = int(torch.where(supervised.any(1), supervised.float().argmax(1), ids.shape[1]).min())
    return common_prefix_length(ids, batch["attention_mask"], first_response - 1)


def sft_loss_sum(causal_lm, batch: dict[str, torch.Tensor], supervised_only: bool = True,
                 shared_prefix: bool = False) -> tuple[torch.Tensor, int]:
    """(sum of token cross-entropies, number of supervised tokens) for one micro-batch."""
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = targets != IGNORE
    n = int(keep.sum())
    decoder, head = decoder_and_head(causal_lm) if supervised_only else (None, None)
    if decoder is not None:
        length = shared_prefix_length(batch) if shared_prefix else 0
        if length:  # hidden states from position `length` on: every loss position is there
            hidden = decode_with_shared_prefix(decoder, batch["input_ids"], batch["attention_mask"], length)
        else:
            hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][keep[:, length:]])
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum"), n
    out = causal_lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logits = out.logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum"), n


def sft_loss_sums_by_group(causal_lm, batch: dict[str, torch.Tensor], row_group: torch.Tensor, n_groups: int,
                           supervised_only: bool = True) -> torch.Tensor:
    """Sum of token cross-entropies per group of rows (``row_group[i]``: the group of row i), for a
    batch that stacks several runs' micro-batches (``train/multi.py``): each run's loss is its own sum."""
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    token_group = row_group.to(targets.device)[:, None].expand_as(targets)[keep]
    decoder, head = decoder_and_head(causal_lm) if supervised_only else (None, None)
    if decoder is not None:
        hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][keep])
    else:
        out = causal_lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        logits = out.logits[:, :-1][keep]
    token_ce = F.cross_entropy(logits.float(), targets[keep], reduction="none")
    return token_ce.new_zeros(n_groups).index_add(0, token_group, token_ce)
