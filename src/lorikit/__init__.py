"""lorikit: train, merge and continually extend LoRA adapters with reduced cross-task interference.

Python API (the command line is a thin layer over these)::

    from lorikit import TrainConfig, AdapterConfig, train, load_model, load_adapter, generate
    train(TrainConfig(out="runs/arith-d", model="smollm2-135m", data="builtin:arithmetic",
                      adapter=AdapterConfig(method="lori-d", rank=32)))
"""

from ._version import __version__
from .adapters.build import AdapterConfig, attach_adapter, load_peft  # noqa: E402
from .adapters.state import AdapterState, LoraModule, load_adapter  # noqa: E402
from .data import Example, load_examples  # noqa: E402
from .errors import LorikitError, UsageError  # noqa: E402
from .eval.generate import GenerationConfig, generate  # noqa: E402
from .models import load_model  # noqa: E402
from .train import TrainConfig, train  # noqa: E402

__all__ = ["AdapterConfig", "AdapterState", "Example", "GenerationConfig", "LoraModule", "LorikitError",
           "TrainConfig", "UsageError", "attach_adapter", "generate", "load_adapter", "load_examples",
           "load_model", "load_peft", "train", "__version__"]
