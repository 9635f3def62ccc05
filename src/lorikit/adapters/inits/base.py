"""The interface of an initialisation of A (the second registry, beside the adapter methods).

Two kinds, as in PEFT's ``init_lora_weights`` options:

- **seeded** inits draw A from a generator seeded by (adapter seed, module) — ``draw`` — so A
  is a function of the seed and can be regenerated (LoRI's frozen A, compact ``.lori`` packing);
- **data-driven** inits (like PEFT's EVA) compute A from statistics of the training data after
  the adapter is attached — ``apply`` — and name the sub-config holding their settings.

See docs/methods.md#initialisations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch


class AdapterInit:
    """One initialisation of A; subclasses set the class attributes and one of the two hooks."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line, used in --a-init / --init help
    title: ClassVar[str] = ""  # the name papers use; docs/methods.md's table and the model card
    paper: ClassVar[str] = ""  # the reference ("" for a library's own rule)
    seeded: ClassVar[bool] = False  # True: ``draw``; False: ``apply`` (data-driven)
    config_field: ClassVar[str | None] = None  # data-driven: the TrainConfig sub-config with its settings
    settings: ClassVar[type | None] = None  # data-driven: that sub-config's dataclass (fields = flags, keys)

    def draw(self, generator: torch.Generator, rank: int, in_features: int) -> torch.Tensor:
        """A (rank × in_features, float32, CPU) drawn from ``generator`` (seeded inits)."""
        raise NotImplementedError(f"init {self.name!r} is not a seeded init")

    def check(self, settings: Any) -> None:
        """Raise UsageError when the sub-config ``settings`` cannot work (data-driven inits)."""

    def inputs(self, settings: Any) -> list[str | None]:
        """The files and folders its settings name (data-driven inits): a run's --out must hold none."""
        return []

    def study_train(self, task: str) -> dict[str, Any]:
        """A data-driven init as an arm of a study (``lorikit study --methods NAME``): the settings of
        its train stage for ``task`` (the method it initialises, ``init``, what it reads)."""
        raise NotImplementedError(f"init {self.name!r} is not a study arm")

    def study_stages(self, study: Any, data: dict[str, str]) -> dict[str, dict[str, Any]]:
        """The stages that arm needs once, before any training (``study``: the ``StudyConfig``;
        ``data``: each task's training data)."""
        return {}

    def apply(self, peft_model, settings: Any, base_model_id: str | None) -> dict:
        """Set every A of ``peft_model`` (B = 0); return the ``init`` record of lorikit.json."""
        raise NotImplementedError(f"init {self.name!r} is not a data-driven init")
