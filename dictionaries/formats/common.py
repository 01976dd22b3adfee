"""Helpers every reader shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sparse_circuits.dictionaries.config import DictionaryError, config_from_file


def take(state: dict[str, torch.Tensor], key: str, ndim: int, source: Path) -> torch.Tensor:
    """Remove and return ``state[key]``, which must exist and have ``ndim`` dimensions."""
    if key not in state:
        raise DictionaryError(f"{source}: missing key {key!r} (has {sorted(state)})")
    tensor = state.pop(key)
    if tensor.ndim != ndim:
        raise DictionaryError(f"{source}: {key} has shape {tuple(tensor.shape)}, expected {ndim}-D")
    return tensor


def json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object."""
    data = config_from_file(path)
    if not isinstance(data, dict):
        raise DictionaryError(f"{path}: expected a JSON object")
    return data
