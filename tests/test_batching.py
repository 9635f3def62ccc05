"""Length-grouped batches: same examples per epoch, less padding, deterministic, longest first."""

from __future__ import annotations

import random

from lorikit.train.batching import length_grouped_batches, random_batches
from lorikit.train.config import TrainConfig
from lorikit.train.trainer import step_schedule


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 400) for _ in range(n)]


def _padded_tokens(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_every_example_once_per_epoch_in_full_batches():
    lengths = _lengths(1003)
    batches = length_grouped_batches(lengths, 8, seed=3, epoch=0)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1003))
    assert sum(len(b) != 8 for b in batches) <= 1  # only the remainder of the last mega-batch


def test_less_padding_than_random_order():
    lengths = _lengths(2000)
    grouped = length_grouped_batches(lengths, 8, seed=0, epoch=0)
    shuffled = random_batches(len(lengths), 8, seed=0, epoch=0)
    assert _padded_tokens(grouped, lengths) < 0.75 * _padded_tokens(shuffled, lengths)


def test_deterministic_and_seed_dependent():
    lengths = _lengths(500)
    a = length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert a == length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert a != length_grouped_batches(lengths, 8, seed=2, epoch=0)
    assert a != length_grouped_batches(lengths, 8, seed=1, epoch=1)


def test_longest_batch_first():
    lengths = _lengths(800)
    batches = length_grouped_batches(lengths, 8, seed=5, epoch=0)
    assert max(lengths[i] for i in batches[0]) == max(lengths)


def test_batch_order_mixes_lengths_across_the_epoch():
    """Batches are not sorted globally (the loss would then follow length, not training)."""
    lengths = _lengths(4000)
    batches = length_grouped_batches(lengths, 8, seed=0, epoch=0)
    longest = [max(lengths[i] for i in b) for b in batches[1:]]
    ascending = sum(x <= y for x, y in zip(longest, longest[1:]))
    assert 0.3 < ascending / (len(longest) - 1) < 0.7


def test_schedule_spans_epochs_and_can_be_switched_off():
    lengths = _lengths(20)
    cfg = TrainConfig(out="x", max_steps=7, batch_size=4)
    seed = cfg.run_seed.used
    schedule = step_schedule(cfg, lengths, seed)
    assert len(schedule) == 7
    assert sorted(i for b in schedule[:5] for i in b) == list(range(20))
    cfg.group_by_length = False
    plain = step_schedule(cfg, lengths, seed)
    assert plain[:5] == random_batches(20, 4, seed, 0)
