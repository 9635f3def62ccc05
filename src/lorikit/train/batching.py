"""Which examples make up each optimizer step: random order, or grouped by length.

A batch is padded to its longest example, so a random batch of GSM8K rows (40 to 400 tokens)
spends a large share of its compute on padding. ``length_grouped_batches`` (the idea of
Hugging Face's ``LengthGroupedSampler``) shuffles the epoch, cuts it into mega-batches of
``mega_batches`` global batches, sorts each mega-batch by length and cuts it into global batches,
then shuffles the order of those batches, keeping the longest one first so that a run meets its
peak memory at step 1 rather than hours in. Every example is still seen once per epoch, and the
whole order is a function of (seed, epoch, lengths) only, which is what resuming from a
checkpoint needs.
"""

from __future__ import annotations

import torch

MEGA_BATCHES = 50


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def random_batches(n_examples: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Example indices of each optimizer step of ``epoch`` (the last batch may be smaller)."""
    order = torch.randperm(n_examples, generator=epoch_generator(seed, epoch)).tolist()
    return [order[i:i + global_batch] for i in range(0, n_examples, global_batch)]


def length_grouped_batches(lengths: list[int], global_batch: int, seed: int, epoch: int,
                           mega_batches: int = MEGA_BATCHES) -> list[list[int]]:
    """Like ``random_batches`` but each batch holds examples of similar length (see module doc)."""
    gen = epoch_generator(seed, epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    mega = global_batch * mega_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        # stable sort: ties keep the shuffled order, so equal lengths still mix across runs' seeds
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[i:i + global_batch] for i in range(0, len(chunk), global_batch))
    if len(batches) > 1:
        longest = max(range(len(batches)), key=lambda b: (max(lengths[i] for i in batches[b]), -b))
        rest = [b for k, b in enumerate(batches) if k != longest]
        perm = torch.randperm(len(rest), generator=gen).tolist()
        batches = [batches[longest]] + [rest[k] for k in perm]
    return batches
