"""The way out: write a dictionary in another project's format, so its own code can load it.

| format              | files written                              | what the peer loads it with        |
|---------------------|--------------------------------------------|------------------------------------|
| saelens             | ``cfg.json`` + ``sae_weights.safetensors`` | ``sae_lens.SAE.load_from_disk``    |
| dictionary_learning | ``ae.pt`` + ``config.json``                | ``<dict_class>.from_pretrained``   |
| sparsify            | ``cfg.json`` + ``sae.safetensors``         | ``sparsify.SparseCoder.load_from_disk`` |

Each writer lives beside its reader in ``dictionaries/formats/<format>.py`` and is its inverse:
reading the written folder back gives the same ``encode`` and ``decode``. What a format cannot
hold (a gated transcoder in SAELens, anything but topk in sparsify, transcoders in
dictionary_learning, a layer of a cross-layer transcoder in any of them) raises ``FormatCannotHold`` before anything is written. Files are written
atomically, the weights first and the config last, in the dictionary's own dtype, into a new
or empty folder or one already holding the same format (never one holding another format,
whose leftover files would be read instead).
"""

from __future__ import annotations

from pathlib import Path

from sparse_circuits.dictionaries.base import Dictionary, DictionaryError
from sparse_circuits.dictionaries.formats import (
    detect_format,
    dictionary_learning,
    load_dictionary,
    saelens,
    sparsify,
)
from sparse_circuits.dictionaries.formats.common import FormatCannotHold

__all__ = ["TARGET_FORMATS", "FormatCannotHold", "convert"]

WRITERS = {
    "saelens": saelens.write,
    "dictionary_learning": dictionary_learning.write,
    "sparsify": sparsify.write,
}
"""Format name -> its writer, ``(dictionary, folder) -> folder``."""
TARGET_FORMATS = tuple(WRITERS)
"""The formats ``convert`` writes (the choices of ``sparse-circuits convert --to``)."""


def convert(dictionary: Dictionary | str | Path, to: str, out: str | Path) -> Path:
    """Write ``dictionary`` (or the one stored at that path, in any readable format) to the
    folder ``out`` in format ``to``; returns ``out``."""
    if to not in WRITERS:
        raise DictionaryError(f"cannot write format {to!r}; known: {', '.join(TARGET_FORMATS)}")
    if not isinstance(dictionary, Dictionary):
        dictionary = load_dictionary(dictionary)
    if dictionary.config.signed:
        raise FormatCannotHold(
            f"a signed topk dictionary (circuit-tracer's TopK) cannot be written as {to}: "
            "its topk applies a ReLU"
        )
    if dictionary.config.is_cross_layer:
        raise FormatCannotHold(
            f"a layer of a cross-layer transcoder (it writes {dictionary.config.writes} and "
            f"{len(dictionary.config.writes_later)} later places) cannot be written as {to}"
        )
    check_target(out, to)
    return WRITERS[to](dictionary, out)


def check_target(out: str | Path, to: str) -> None:
    """Refuse ``out`` if it is a file, or a folder holding a dictionary in a format other than
    ``to`` (its leftover files would be read instead of the ones written)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DictionaryError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        found = detect_format(out)
    except DictionaryError:  # files of no known format: nothing would be read instead
        return
    if found != to:
        raise DictionaryError(f"{out}: already holds a {found} dictionary; write {to} elsewhere")
