"""The way out: write a dictionary in another project's format, so its own code can load it.

| format              | files written                              | what the peer loads it with        |
|---------------------|--------------------------------------------|------------------------------------|
| saelens             | ``cfg.json`` + ``sae_weights.safetensors`` | ``sae_lens.SAE.load_from_disk``    |
| dictionary_learning | ``ae.pt`` + ``config.json``                | ``<dict_class>.from_pretrained``   |
| sparsify            | ``cfg.json`` + ``sae.safetensors``         | ``sparsify.SparseCoder.load_from_disk`` |

Each writer lives beside its reader in ``dictionaries/formats/<format>.py`` and is its inverse:
reading the written folder back gives the same ``encode`` and ``decode``. What a format cannot
hold (a gated transcoder in SAELens, anything but topk in sparsify, transcoders in
dictionary_learning) raises ``DictionaryError`` before anything is written. Files are written
atomically, the weights first and the config last, in the dictionary's own dtype.
"""

from __future__ import annotations

from pathlib import Path

from sparse_circuits.dictionaries.base import Dictionary, DictionaryError
from sparse_circuits.dictionaries.formats import (
    dictionary_learning,
    load_dictionary,
    saelens,
    sparsify,
)

__all__ = ["TARGET_FORMATS", "convert"]

WRITERS = {
    "saelens": saelens.write,
    "dictionary_learning": dictionary_learning.write,
    "sparsify": sparsify.write,
}
TARGET_FORMATS = tuple(WRITERS)


def convert(dictionary: Dictionary | str | Path, to: str, out: str | Path) -> Path:
    """Write ``dictionary`` (or the one stored at that path, in any readable format) to the
    folder ``out`` in format ``to``; returns ``out``."""
    if to not in WRITERS:
        raise DictionaryError(f"cannot write format {to!r}; known: {', '.join(TARGET_FORMATS)}")
    if not isinstance(dictionary, Dictionary):
        dictionary = load_dictionary(dictionary)
    if dictionary.config.signed:
        raise DictionaryError(
            f"a signed topk dictionary (circuit-tracer's TopK) cannot be written as {to}: "
            "its topk applies a ReLU"
        )
    return WRITERS[to](dictionary, out)
