"""Training sparse dictionaries: one objective per architecture, one loop for all."""

from . import gated, jumprelu, relu, topk  # noqa: F401  (register the objectives)
from .config import TrainConfig, TrainConfigError
from .objective import OBJECTIVES, Objective, StepOutput, geometric_median
from .sources import ActivationSource, TensorSource
from .trainer import (
    CHECKPOINT_FILE,
    DictionaryTrainer,
    RunFolderError,
    fold_scales,
    train_dictionaries,
    train_dictionary,
)

__all__ = [
    "CHECKPOINT_FILE",
    "OBJECTIVES",
    "ActivationSource",
    "DictionaryTrainer",
    "Objective",
    "RunFolderError",
    "StepOutput",
    "TensorSource",
    "TrainConfig",
    "TrainConfigError",
    "fold_scales",
    "geometric_median",
    "train_dictionaries",
    "train_dictionary",
]
