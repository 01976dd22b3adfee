"""Sparse dictionaries: architectures, file formats, training and evaluation.

Knows nothing of models or circuits: a dictionary maps activations to features and back.
"""

from sparse_circuits.dictionaries.base import (
    ARCHITECTURES,
    Dictionary,
    DictionaryConfig,
    DictionaryError,
    DictionaryOutput,
    architecture_class,
)
from sparse_circuits.dictionaries.cross_layer import (
    CrossLayerTranscoder,
    load_cross_layer_transcoder,
)
from sparse_circuits.dictionaries.formats import detect_format, load_dictionary
from sparse_circuits.dictionaries.gated import GatedSAE
from sparse_circuits.dictionaries.jumprelu import JumpReluSAE
from sparse_circuits.dictionaries.relu import ReluSAE
from sparse_circuits.dictionaries.topk import BatchTopKSAE, TopKSAE

__all__ = [
    "ARCHITECTURES",
    "BatchTopKSAE",
    "CrossLayerTranscoder",
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
    "load_cross_layer_transcoder",
    "load_dictionary",
]
