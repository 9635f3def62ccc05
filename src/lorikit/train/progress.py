"""Throughput shown on the training progress bar.

The first optimizer step pays for one-off work (allocating the optimizer state, warming the
kernels' caches), often several times a normal step, so a rate averaged from the start
understates the run's speed. ``Throughput`` reports supervised tokens (or examples) per second
over the steps after the first; tqdm's own ETA uses an exponential moving average of the step
rate (``smoothing``), which forgets the first step the same way.
"""

from __future__ import annotations


class Throughput:
    def __init__(self, unit: str = "tok/s"):
        self.unit = unit
        self.units = 0
        self.seconds = 0.0

    def update(self, step_index: int, units: int, seconds: float) -> dict[str, str]:
        """Add one step (``step_index`` 0 is the warm-up step, shown but not averaged)."""
        if step_index == 0:
            return {self.unit: f"{units / max(seconds, 1e-9):.0f}"}
        self.units += units
        self.seconds += seconds
        return {self.unit: f"{self.units / max(self.seconds, 1e-9):.0f}"}
