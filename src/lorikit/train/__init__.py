"""Training: configs, the SFT loop and the trainable-parameter plans of each method."""

from .config import TrainConfig
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]
