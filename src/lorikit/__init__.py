"""lorikit: train, merge and continually extend LoRA adapters with the methods proposed to reduce
cross-task interference (LoRI, OSRM), and measure run by run whether they do (``lorikit study``).

Python API (the command line is a thin layer over these)::

    from lorikit import TrainConfig, AdapterConfig, train, load_model, load_adapter, generate
    train(TrainConfig(out="runs/arith-d", model="smollm2-135m", data="builtin:arithmetic",
                      adapter=AdapterConfig(method="lori-d", rank=32)))

Names load on first use (PEP 562): ``import lorikit`` does not import torch, transformers or PEFT.
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .utils.lazy import lazy_exports

_EXPORTS = {
    "AdapterConfig": "adapters.build", "attach_adapter": "adapters.build", "load_peft": "adapters.build",
    "AdapterState": "adapters.state", "LoraModule": "adapters.state", "load_adapter": "adapters.state",
    "Example": "data", "load_examples": "data",
    "LorikitError": "errors", "UsageError": "errors",
    "GenerationConfig": "eval.generation_config", "generate": "eval.generate",
    "load_model": "models",
    "TrainConfig": "train", "train": "train", "train_many": "train",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:  # what type checkers and IDEs see; the table above is what runs
    from .adapters.build import AdapterConfig, attach_adapter, load_peft
    from .adapters.state import AdapterState, LoraModule, load_adapter
    from .data import Example, load_examples
    from .errors import LorikitError, UsageError
    from .eval.generate import generate
    from .eval.generation_config import GenerationConfig
    from .models import load_model
    from .train import TrainConfig, train, train_many
