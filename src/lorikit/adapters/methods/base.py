"""The interface every adapter method implements (PEFT's ``LoraVariant`` idea, kept small).

A method is a strategy object, registered in ``adapters/methods/__init__.py`` under its name:

- ``summary``: one line for ``--method``'s help; the docs section is ``docs/methods.md#<name>``;
- ``title`` and ``paper``: the name papers use and the reference, shown in docs/methods.md's
  table and in the model card of every adapter trained with the method;
- flags saying what it needs and keeps: ``freezes_a`` (only B trains), ``seeded_a`` (A is
  ``seeded_projection(seed, module, a_init)``, so a saved adapter's A is regenerable from its
  ``lorikit.json``), ``uses_mask`` (only the entries of a sparsity mask over B train; the run
  needs ``--mask``), ``continues`` (it can train on from an existing adapter, ``--from``);
- ``prepare``: what it changes on a freshly attached PEFT adapter;
- ``plan``: which tensors train (``plans.DensePlan`` / ``plans.SparsePlan``);
- ``trainable_count``: the exact trainable-parameter count from the A and B sizes (``params``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch


LORI_PAPER = "Zhang et al. 2025, LoRI: Reducing Cross-Task Interference in Multi-Task Low-Rank Adaptation, arXiv 2504.07448"


class AdapterMethod:
    """Base strategy: a dense method whose fresh PEFT adapter trains as attached."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    title: ClassVar[str] = ""  # the name papers use (LoRI-D)
    paper: ClassVar[str] = ""  # "Authors year, Title, venue" ("" for a library's own rule)
    freezes_a: ClassVar[bool] = False
    seeded_a: ClassVar[bool] = False
    uses_mask: ClassVar[bool] = False
    continues: ClassVar[bool] = False

    def prepare(self, peft_model, adapter_cfg) -> None:
        """Adjust a fresh PEFT adapter described by ``adapter_cfg`` (an ``AdapterConfig``)."""

    def plan(self, peft_model, masks: dict[str, torch.Tensor] | None = None, info: dict | None = None):
        """The training plan over ``peft_model`` (``masks``: module → bool [out, r], mask methods only)."""
        from .plans import DensePlan  # torch: loaded when training, not when the registry is listed

        return DensePlan(peft_model, info)

    def trainable_count(self, a_sizes: list[int], b_sizes: list[int], sparsity: float, scope: str) -> int:
        """Trainable parameters given every adapted module's A and B entry counts."""
        return sum(a_sizes) + sum(b_sizes)

    def __repr__(self) -> str:
        return f"<adapter method {self.name}>"
