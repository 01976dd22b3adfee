"""A dictionary set: a folder with one subfolder per place (``resid.3/``, ``mlp.7/`` ...), or a
circuit-tracer transcoder folder, one place per layer (the ``mlp.N`` each layer's transcoder
writes first): ``layer_N.safetensors`` files, or a cross-layer transcoder's
``W_enc_N.safetensors`` + ``W_dec_N.safetensors`` (``dictionaries.cross_layer``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from sparse_circuits.dictionaries.base import Dictionary, DictionaryError
from sparse_circuits.dictionaries.formats import circuit_tracer, load_dictionary

__all__ = ["load_dictionary_set", "list_dictionary_set", "set_members"]


def set_members(directory: str | Path) -> dict[str, Path]:
    """``{place: path}`` for every dictionary of a set: its subfolders, or the layer files of a
    circuit-tracer transcoder folder (a cross-layer transcoder's ``W_enc_N.safetensors``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DictionaryError(f"{directory}: dictionary set folder not found")
    layers = circuit_tracer.set_members(directory)
    if layers:
        return layers
    folders = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return {p.name: p for p in sorted(folders)}


def list_dictionary_set(directory: str | Path) -> list[str]:
    """The place names a dictionary set holds (its subfolder names, or ``mlp.N`` per layer)."""
    return sorted(set_members(directory))


def load_dictionary_set(
    directory: str | Path,
    places: Iterable[str] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Dictionary]:
    """Load ``places`` (default: every subfolder) as place -> dictionary."""
    directory = Path(directory)
    members = set_members(directory)
    available = sorted(members)
    wanted = available if places is None else list(places)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise DictionaryError(
            f"{directory}: no dictionary for {', '.join(missing)} (it has: "
            f"{', '.join(available) or 'nothing'})"
        )
    dictionaries = {}
    for place in wanted:
        dictionary = load_dictionary(members[place], device=device, dtype=dtype)
        if dictionary.config.writes is None and dictionary.config.place not in (None, place):
            raise DictionaryError(
                f"{members[place]}: config says it was trained on {dictionary.config.place}"
            )
        dictionaries[place] = dictionary
    return dictionaries
