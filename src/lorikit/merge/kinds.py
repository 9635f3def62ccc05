"""The four kinds of merge method, as strategies: what a method's function takes and gives, how
its result becomes a full update and an adapter, and which options apply.

- ``adapter`` (``cat``, ``linear``): ``fn(modules, weights, params) -> LoraModule``, an exact
  combination of the factors; the output rank is set by the parents (``--rank`` refused).
- ``factor`` (KnOTS, Core Space, TSV-M, Iso-C, Iso-CTS): same signature, computed in the span of
  the factors; the result is exact unless ``--rank`` truncates it in factor space.
- ``delta`` (task arithmetic, TIES, DARE, magnitude prune): entrywise on full updates,
  ``fn(deltas, weights: Tensor, params) -> Tensor``; factored back by truncated SVD at ``--rank``
  (default: the largest parent rank). These also serve as the ``inner`` method of KnOTS and Core Space.
- ``emr`` (EMR-Merging): a shared update plus a mask and a rescaler per task, so there is one
  merged update per task (``--task``).

``Merger`` (core.py) asks the kind; nothing else compares kind names.
"""

from __future__ import annotations

from typing import ClassVar

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..adapters.state import AdapterState
from ..errors import LorikitError
from .ops import truncate
from .svd import SvdReport, factor


class MergeKind:
    """A kind's behaviour; ``merger`` is the ``core.Merger`` running the merge."""

    name: ClassVar[str] = ""
    takes_rank: ClassVar[bool] = True  # --rank applies (else the parents set the rank)
    per_task: ClassVar[bool] = False  # one merged update per task: --task picks one
    entrywise: ClassVar[bool] = False  # fn works on same-shaped tensors
    serves_inner: ClassVar[bool] = False  # usable as the inner method of knots / core-space

    def delta(self, merger, module: str, task_index: int | None) -> torch.Tensor:
        """The merged full update of ``module`` (float32)."""
        return merger.factors(module).delta()

    def output_rank(self, merger, rank: int | None) -> int | None:
        """The rank the adapter is factored at; None: exact."""
        return rank or merger.max_rank()

    def recorded_rank(self, merger, rank: int | None) -> int | str | None:
        """What lorikit.json records as the merge's rank (None: nothing)."""
        return None

    def factored(self, merger, module: str, rank: int | None, task_index: int | None):
        """(LoraModule, residual, total) of ``module`` at ``rank``."""
        return factor(module, merger.delta(module, task_index), rank)

    def to_adapter(self, merger, rank: int | None, task_index: int | None, meta: dict | None,
                   progress, portable: bool = True) -> tuple[AdapterState, SvdReport | None]:
        rank = self.output_rank(merger, rank)
        report, mods = SvdReport(rank or 0), []
        for module in progress(merger.modules):
            lora, residual, total = self.factored(merger, module, rank, task_index)
            report.add(module, residual, total)
            mods.append(lora)
        report.rank = rank or max(m.rank for m in mods)
        if meta is not None:
            meta = {**meta, "svd": report.summary()}
        return AdapterState.from_modules(mods, merger.config(), meta=meta, portable=portable), report

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # loud, not silently False: code written when kinds were names
            raise TypeError(f"merge kind {self.name}: ask its flags (takes_rank, per_task, entrywise, "
                            f"serves_inner) instead of comparing it with {other!r}")
        return self is other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<merge kind {self.name}>"


class AdapterKind(MergeKind):
    name = "adapter"
    takes_rank = False

    def to_adapter(self, merger, rank, task_index, meta, progress, portable=True):
        mods = [merger.factors(m) for m in progress(merger.modules)]
        return AdapterState.from_modules(mods, merger.config(), meta=meta, portable=portable), None


class FactorKind(MergeKind):
    name = "factor"
    serves_inner = True

    def output_rank(self, merger, rank):
        return rank  # exact unless asked

    def recorded_rank(self, merger, rank):
        return rank or "exact"

    def factored(self, merger, module, rank, task_index):
        return truncate(merger.factors(module), rank)  # Gram matrices + SVD of (Σ r)-sized ones


class DeltaKind(MergeKind):
    name = "delta"
    entrywise = True
    serves_inner = True

    def delta(self, merger, module, task_index):
        import torch

        weights = torch.tensor(merger.weights, dtype=torch.float32)
        return merger.method.fn(merger.deltas(module), weights, merger.params.at(module))

    def recorded_rank(self, merger, rank):
        return rank or merger.max_rank()


class EmrKind(MergeKind):
    name = "emr"
    per_task = True

    def delta(self, merger, module, task_index):
        if task_index is None:
            raise LorikitError("emr: a merged update exists per task; pass task_index")
        scale = merger.emr_scales()[task_index]
        part = merger.emr_module(module)
        return scale * (part.tau * part.masks[task_index])


KINDS: dict[str, MergeKind] = {k.name: k for k in (AdapterKind(), DeltaKind(), EmrKind(), FactorKind())}
