"""A dictionary set: a folder with one subfolder per place (``resid.3/``, ``mlp.7/`` ...)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from sparse_circuits.dictionaries.base import Dictionary, DictionaryError
from sparse_circuits.dictionaries.formats import load_dictionary

__all__ = ["load_dictionary_set", "list_dictionary_set"]


def list_dictionary_set(directory: str | Path) -> list[str]:
    """The place names a dictionary set holds (its subfolder names)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DictionaryError(f"{directory}: dictionary set folder not found")
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_dictionary_set(
    directory: str | Path,
    places: Iterable[str] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Dictionary]:
    """Load ``places`` (default: every subfolder) as place -> dictionary."""
    directory = Path(directory)
    available = list_dictionary_set(directory)
    wanted = available if places is None else list(places)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise DictionaryError(
            f"{directory}: no dictionary for {', '.join(missing)} (it has: "
            f"{', '.join(available) or 'nothing'})"
        )
    dictionaries = {}
    for place in wanted:
        dictionary = load_dictionary(directory / place, device=device, dtype=dtype)
        if dictionary.config.writes is None and dictionary.config.place not in (None, place):
            raise DictionaryError(
                f"{directory / place}: config says it was trained on {dictionary.config.place}"
            )
        dictionaries[place] = dictionary
    return dictionaries
