"""Reader for Gemma Scope: ``params.npz`` (a folder holding it, or the file itself).

The archive holds ``W_enc (d_model, d_sae)``, ``W_dec (d_sae, d_model)``, ``b_enc (d_sae)``,
``b_dec (d_model)`` and ``threshold (d_sae)`` (some copies spell the matrices ``w_enc``/``w_dec``),
all float32. The SAEs are JumpReLU and do not subtract ``b_dec`` from the input:

    pre = x @ W_enc + b_enc;   f = 1[pre > threshold] * relu(pre);   x_hat = f @ W_dec + b_dec

which is our ``jumprelu`` with ``center_input=False``. The transcoders of
``gemma-scope-2b-pt-transcoders`` use the same keys (read the MLP input, write the MLP output).
The archive is read with ``allow_pickle=False``: object arrays are refused.

The place and model are taken from the path when it names both the release and the layer, as in
the Hugging Face layout ``gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz``:
``res`` -> ``resid.L``, ``mlp`` -> ``mlp.L``, ``transcoders`` -> ``mlp_in.L`` writing ``mlp.L``;
``att`` SAEs read the per-head ``hook_z`` and get no place. Otherwise both stay ``None``.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, DictionaryError
from sparse_circuits.dictionaries.native import from_state_dict

PARAMS_FILE = "params.npz"

_RELEASE = re.compile(r"gemma-scope-(2b|9b|27b)-(pt|it)-(res|mlp|att|transcoders)(?:-|$)")
_LAYER = re.compile(r"^layer_(\d+)$")


def detect(path: Path) -> bool:
    if path.is_dir():
        return (path / PARAMS_FILE).is_file()
    return path.is_file() and path.suffix == ".npz"


def read(path: Path) -> Dictionary:
    params = path / PARAMS_FILE if path.is_dir() else path
    arrays = _load(params)
    state = {
        "W_enc": _take(arrays, "W_enc", params),
        "W_dec": _take(arrays, "W_dec", params),
        "b_enc": _take(arrays, "b_enc", params),
        "b_dec": _take(arrays, "b_dec", params),
        "threshold": _take(arrays, "threshold", params),
    }
    if arrays:
        raise DictionaryError(f"{params}: unexpected arrays {sorted(arrays)}")
    if state["W_enc"].ndim != 2:
        raise DictionaryError(f"{params}: W_enc has shape {tuple(state['W_enc'].shape)}")
    d_in, d_sae = state["W_enc"].shape
    place, writes, model = _from_path(params)
    try:
        config = DictionaryConfig(
            arch="jumprelu",
            d_in=d_in,
            d_sae=d_sae,
            center_input=False,
            place=place,
            writes=writes,
            model=model,
            source_format="gemma_scope",
        )
    except DictionaryError as error:
        raise DictionaryError(f"{params}: {error}") from None
    return from_state_dict(config, state, source=str(params))


def _load(params: Path) -> dict[str, np.ndarray]:
    if not params.is_file():
        raise DictionaryError(f"{params}: file not found")
    try:
        archive = np.load(params, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DictionaryError(f"{params}: a single array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except DictionaryError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DictionaryError(f"{params}: not a readable .npz archive ({error})") from None


def _take(arrays: dict[str, np.ndarray], name: str, params: Path) -> torch.Tensor:
    for key in (name, name.lower()):
        if key in arrays:
            array = arrays.pop(key)
            if not np.issubdtype(array.dtype, np.floating):
                raise DictionaryError(f"{params}: {key} has dtype {array.dtype}, expected floats")
            return torch.from_numpy(np.array(array, dtype=np.float32))
    raise DictionaryError(f"{params}: missing array {name!r} (has {sorted(arrays)})")


def _from_path(params: Path) -> tuple[str | None, str | None, str | None]:
    """``(place, writes, model)`` read off a Hugging Face style path, or ``None``s."""
    release = layer = None
    for part in params.parts:
        release = _RELEASE.search(part) or release
        match = _LAYER.match(part)
        if match:
            layer = int(match.group(1))
    if release is None or layer is None:
        return None, None, None
    size, tuning, site = release.groups()
    model = f"google/gemma-2-{size}" + ("-it" if tuning == "it" else "")
    if site == "res":
        return f"resid.{layer}", None, model
    if site == "mlp":
        return f"mlp.{layer}", None, model
    if site == "transcoders":
        return f"mlp_in.{layer}", f"mlp.{layer}", model
    return None, None, model
