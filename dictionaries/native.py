"""The native format: a folder with ``config.json`` and ``weights.safetensors``.

The weights use the names of ``Dictionary`` (``W_enc (d_in, d_sae)``, ``b_enc``,
``W_dec (d_sae, d_out)``, ``b_dec``, plus each architecture's own: ``r_mag``, ``b_mag``,
``threshold``, ``W_skip``); the config is ``DictionaryConfig`` as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sparse_circuits.dictionaries.config import (
    DictionaryConfig,
    DictionaryError,
    architecture_class,
    config_from_file,
)
from sparse_circuits.files import read_safetensors, write_safetensors, write_text_atomic

if TYPE_CHECKING:
    from sparse_circuits.dictionaries.base import Dictionary

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "save_native",
    "load_native",
    "from_state_dict",
    "is_native",
    "stored_dtype",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


def is_native(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file() and (directory / WEIGHTS_FILE).is_file()


def save_native(dictionary: Dictionary, directory: str | Path) -> Path:
    """Write the folder; each file lands atomically, weights first, config last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(directory / WEIGHTS_FILE, dict(dictionary.state_dict()))
    write_text_atomic(directory / CONFIG_FILE, json.dumps(dictionary.config.to_json(), indent=2))
    return directory


def stored_dtype(state: dict[str, torch.Tensor]) -> torch.dtype:
    """The floating dtype every floating tensor of a file shares; float32 when they differ."""
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def from_state_dict(
    config: DictionaryConfig,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    dtype: torch.dtype | None = None,
) -> Dictionary:
    """Build a dictionary of ``config.arch`` from named tensors, checking names, shapes, NaNs.

    It comes back in ``dtype``; by default the one its tensors share (``stored_dtype``), so a
    file stored in bfloat16 stays bfloat16. A reader that folds conventions into the weights in
    float32 passes the dtype of the file it read."""
    dictionary = architecture_class(config.arch)(config)
    expected = dictionary.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DictionaryError(
            f"{source}: weights do not match a {config.arch} dictionary "
            f"(missing {missing}, unexpected {unexpected})"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise DictionaryError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, config says "
                f"{tuple(expected[name].shape)} (d_in={config.d_in}, d_sae={config.d_sae})"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise DictionaryError(f"{source}: {name} contains NaN or infinite values")
    dictionary.load_state_dict({name: t.to(torch.float32) for name, t in state.items()})
    return dictionary.to(stored_dtype(state) if dtype is None else dtype)


def load_native(directory: Path) -> Dictionary:
    config_path = directory / CONFIG_FILE
    config = DictionaryConfig.from_json(config_from_file(config_path), source=str(config_path))
    weights_path = directory / WEIGHTS_FILE
    state = read_safetensors(weights_path, DictionaryError)
    return from_state_dict(config, state, source=str(weights_path))
