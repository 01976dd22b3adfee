"""Training sparse dictionaries: one objective per architecture, one loop for all."""

from sparse_circuits.dictionaries.training import (  # noqa: F401  (register the objectives)
    gated,
    jumprelu,
    matryoshka,
    relu,
    topk,
)
from sparse_circuits.dictionaries.training.config import TrainConfig, TrainConfigError
from sparse_circuits.dictionaries.training.objective import (
    OBJECTIVES,
    Objective,
    StepOutput,
    geometric_median,
)
from sparse_circuits.dictionaries.training.sources import ActivationSource, TensorSource
from sparse_circuits.dictionaries.training.trainer import (
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
