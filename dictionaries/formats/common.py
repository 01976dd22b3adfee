"""Helpers the readers and writers share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sparse_circuits.dictionaries.config import DictionaryError, config_from_file
from sparse_circuits.dictionaries.formats import detect_format

if TYPE_CHECKING:
    from sparse_circuits.dictionaries.base import Dictionary


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


def encoder_weights(dictionary: Dictionary, *, center_input: bool) -> dict[str, torch.Tensor]:
    """The dictionary's weights rewritten for a format that does (``center_input=True``) or
    does not subtract ``b_dec`` from the input before encoding, with the same features.

    ``(x - c * b_dec) @ W_enc + b_enc == (x - c' * b_dec) @ W_enc + b_enc - (c - c') * b_dec @
    W_enc``, so only ``b_enc`` moves (and the gated magnitude bias ``b_mag``, by the same shift
    times ``exp(r_mag)``). Shifts are computed in float32 and stored in the dictionary's dtype.
    """
    state = {name: t.detach() for name, t in dictionary.state_dict().items()}
    change = int(dictionary.config.center_input) - int(center_input)
    if change == 0:
        return state
    if dictionary.d_in != dictionary.d_out:
        raise DictionaryError("only a dictionary with d_out == d_in can subtract b_dec from x")
    shift_F = change * (state["b_dec"].float() @ state["W_enc"].float())
    dtype = dictionary.dtype
    state["b_enc"] = (state["b_enc"].float() - shift_F).to(dtype)
    if "r_mag" in state:
        magnitude_shift_F = shift_F * state["r_mag"].float().exp()
        state["b_mag"] = (state["b_mag"].float() - magnitude_shift_F).to(dtype)
    return state


def prepare_folder(directory: str | Path, format_name: str) -> Path:
    """Create ``directory`` for a dictionary in ``format_name``; refuse one that holds a
    dictionary in another format (its leftover files would be read instead)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DictionaryError(f"{directory}: exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()):
        try:
            found = detect_format(directory)
        except DictionaryError:
            found = None
        if found is not None and found != format_name:
            raise DictionaryError(
                f"{directory}: already holds a {found} dictionary; write {format_name} elsewhere"
            )
    directory.mkdir(parents=True, exist_ok=True)
    return directory
