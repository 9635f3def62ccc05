"""Training: configs, the SFT loop and the trainable-parameter plans of each method."""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the command line's
# --help and configs stay free of torch / transformers / PEFT
_EXPORTS = {
    "TrainConfig": "config", "Trainer": "trainer", "train": "trainer", "train_many": "multi",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["TrainConfig", "Trainer", "train", "train_many"]
