"""Read a dictionary in any supported format; the format is recognised from the files present.

| format              | files                                         | module                |
|---------------------|-----------------------------------------------|-----------------------|
| native              | ``config.json`` + ``weights.safetensors``     | ``dictionaries.native`` |
| dictionary_learning | ``ae.pt`` + ``config.json``                   | ``dictionary_learning`` |
| SAELens             | ``cfg.json`` + ``sae_weights.safetensors``    | ``saelens``           |
| Gemma Scope         | ``params.npz``                                | ``gemma_scope``       |
| sparsify            | ``cfg.json`` + ``sae.safetensors``            | ``sparsify``          |
| circuit-tracer      | ``layer_N.safetensors`` (a file, or a folder holding one) | ``circuit_tracer`` |
| circuit-tracer CLT  | ``W_enc_N.safetensors`` + ``W_dec_N.safetensors`` (one layer) | ``circuit_tracer`` |

Each reader module defines ``detect(path) -> bool`` and ``read(path) -> Dictionary`` and folds
the source's conventions (transposes, input scaling, thresholds) into the native parameters.
No pickle is ever executed: ``torch.load`` runs with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sparse_circuits.dictionaries.base import Dictionary, DictionaryError
from sparse_circuits.dictionaries.native import is_native, load_native

__all__ = ["load_dictionary", "detect_format", "FORMATS"]


def _readers():
    from sparse_circuits.dictionaries.formats import (
        circuit_tracer,
        dictionary_learning,
        gemma_scope,
        saelens,
        sparsify,
    )

    return {
        "dictionary_learning": dictionary_learning,
        "saelens": saelens,
        "gemma_scope": gemma_scope,
        "sparsify": sparsify,
        "circuit_tracer": circuit_tracer,
    }


FORMATS = ("native", "dictionary_learning", "saelens", "gemma_scope", "sparsify", "circuit_tracer")


def detect_format(path: str | Path) -> str:
    """The name of the format stored at ``path``; an error lists what each format looks like."""
    path = Path(path)
    if not path.exists():
        raise DictionaryError(f"{path}: no such file or folder")
    if path.is_dir() and is_native(path):
        return "native"
    for name, reader in _readers().items():
        if reader.detect(path):
            return name
    raise DictionaryError(
        f"{path}: not a dictionary in any known format. Expected config.json + weights.safetensors "
        "(native), ae.pt + config.json (dictionary_learning), cfg.json + sae_weights.safetensors "
        "(SAELens), params.npz (Gemma Scope), cfg.json + sae.safetensors (sparsify) or "
        "layer_N.safetensors or W_enc_N.safetensors + W_dec_N.safetensors (circuit-tracer)"
    )


def load_dictionary(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Dictionary:
    """Load the dictionary at ``path`` (a folder, or a file for circuit-tracer transcoders)."""
    path = Path(path)
    name = detect_format(path)
    dictionary = load_native(path) if name == "native" else _readers()[name].read(path)
    dictionary.config.source_format = name
    dictionary.requires_grad_(False)
    return dictionary.to(device=device, dtype=dtype).eval()
