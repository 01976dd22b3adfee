"""Sparse dictionaries: architectures, file formats, training and evaluation.

Knows nothing of models or circuits: a dictionary maps activations to features and back.
"""

from .base import (
    ARCHITECTURES,
    Dictionary,
    DictionaryConfig,
    DictionaryError,
    DictionaryOutput,
    architecture_class,
)
from .formats import detect_format, load_dictionary
from .gated import GatedSAE
from .jumprelu import JumpReluSAE
from .relu import ReluSAE
from .topk import BatchTopKSAE, TopKSAE

__all__ = [
    "ARCHITECTURES",
    "BatchTopKSAE",
    "Dictionary",
    "DictionaryConfig",
    "DictionaryError",
    "DictionaryOutput",
    "GatedSAE",
    "JumpReluSAE",
    "ReluSAE",
    "TopKSAE",
    "architecture_class",
    "detect_format",
    "load_dictionary",
]
