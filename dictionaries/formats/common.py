"""Helpers the readers and writers share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sparse_circuits.dictionaries.config import DictionaryError, config_from_file

if TYPE_CHECKING:
    from sparse_circuits.dictionaries.base import Dictionary


class FormatCannotHold(DictionaryError):
    """A writer refusing a dictionary its format cannot hold (an architecture, a transcoder, a
    width), before anything is written. The message says what the format lacks; it names no
    file, since the dictionary may be in memory."""


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
        raise FormatCannotHold("only a dictionary with d_out == d_in can subtract b_dec from x")
    shift_F = change * (state["b_dec"].float() @ state["W_enc"].float())
    dtype = dictionary.dtype
    state["b_enc"] = (state["b_enc"].float() - shift_F).to(dtype)
    if "r_mag" in state:
        magnitude_shift_F = shift_F * state["r_mag"].float().exp()
        state["b_mag"] = (state["b_mag"].float() - magnitude_shift_F).to(dtype)
    return state
