"""Reader for circuit-tracer per-layer transcoders: ``layer_N.safetensors``.

``path`` is the file, or a folder holding exactly one ``layer_N.safetensors``. The keys written
by ``SingleLayerTranscoder.to_safetensors`` (D = d_model, F = d_transcoder):
``W_enc (F, D)`` used as ``F.linear(x, W_enc, b_enc)``, ``b_enc (F)``, ``W_dec (F, D)``,
``b_dec (D)``, optional ``activation_function.threshold (F)`` (JumpReLU), optional ``k`` (TopK)
and optional ``W_skip (D, D)`` used as ``x @ W_skip.T``. The Gemma Scope 2 spelling read by
``load_gemma_scope_2_transcoder`` is accepted too: ``w_enc (D, F)``, ``w_dec``, ``b_enc``,
``b_dec``, ``threshold`` and ``affine_skip_connection (D, D)`` used as ``x @ asc``.

circuit-tracer never subtracts ``b_dec`` from the input (``center_input=False``). Its
activations are ``relu(pre)`` without a threshold, ``pre * (pre > threshold)`` for JumpReLU
(no ReLU: equal to ours exactly when every threshold is >= 0), and for TopK the k largest
``pre`` kept with their sign (no ReLU). We store ``W_enc.T`` and ``W_skip.T``.

The transcoder of layer N reads the MLP input and writes the MLP output: ``place = mlp_in.N``,
``writes = mlp.N``. (Some transcoder sets read ``hook_resid_mid`` instead of the normalised MLP
input; that is recorded in circuit-tracer's own config, not in these files.)

Refused: negative thresholds and TopK files (their signed activations differ from our ReLU'd
ones), and folders with several layer files (pass one file).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, DictionaryError
from sparse_circuits.dictionaries.formats.common import take
from sparse_circuits.dictionaries.native import from_state_dict
from sparse_circuits.files import read_safetensors

_LAYER_FILE = re.compile(r"^layer_(\d+)\.safetensors$")


def detect(path: Path) -> bool:
    if path.is_file():
        return _LAYER_FILE.match(path.name) is not None
    return path.is_dir() and bool(_layer_files(path))


def read(path: Path) -> Dictionary:
    file = _the_file(path)
    layer = int(_LAYER_FILE.match(file.name).group(1))
    state = dict(read_safetensors(file, DictionaryError))
    native = _gemma_scope_2(state, file) if "w_enc" in state else _circuit_tracer(state, file)
    if state:
        raise DictionaryError(f"{file}: unexpected keys {sorted(state)}")

    d_sae, d_model = native["b_enc"].shape[0], native["b_dec"].shape[0]
    if "threshold" in native:
        threshold = native["threshold"]
        if threshold.ndim == 0:
            native["threshold"] = threshold.expand(d_sae).clone()
        if bool((threshold < 0).any()):
            raise DictionaryError(
                f"{file}: negative JumpReLU thresholds keep negative activations in "
                "circuit-tracer, which a ReLU-based jumprelu cannot reproduce"
            )
    try:
        config = DictionaryConfig(
            arch="jumprelu" if "threshold" in native else "relu",
            d_in=d_model,
            d_sae=d_sae,
            center_input=False,
            skip="W_skip" in native,
            place=f"mlp_in.{layer}",
            writes=f"mlp.{layer}",
            source_format="circuit_tracer",
        )
    except DictionaryError as error:
        raise DictionaryError(f"{file}: {error}") from None
    return from_state_dict(config, native, source=str(file))


def _layer_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if _LAYER_FILE.match(p.name) and p.is_file())
    except OSError:
        return []


def _the_file(path: Path) -> Path:
    if not path.is_dir():
        if _LAYER_FILE.match(path.name) is None:
            raise DictionaryError(f"{path}: not a layer_N.safetensors file")
        return path
    files = _layer_files(path)
    if len(files) != 1:
        names = [f.name for f in files]
        raise DictionaryError(
            f"{path}: expected exactly one layer_N.safetensors, found {len(files)} {names}; "
            "pass the file of the layer you want"
        )
    return files[0]


def _circuit_tracer(state: dict[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    if "k" in state:
        raise DictionaryError(
            f"{file}: TopK transcoders keep negative top-k values in circuit-tracer; "
            "our topk applies a ReLU, so this file cannot be read exactly"
        )
    W_enc = take(state, "W_enc", 2, file)
    native = {
        "b_enc": take(state, "b_enc", 1, file),
        "W_dec": take(state, "W_dec", 2, file),
        "b_dec": take(state, "b_dec", 1, file),
    }
    expected = (native["b_enc"].shape[0], native["b_dec"].shape[0])
    if tuple(W_enc.shape) != expected:
        raise DictionaryError(
            f"{file}: W_enc has shape {tuple(W_enc.shape)}, expected (d_transcoder, d_model) "
            f"= {expected}"
        )
    native["W_enc"] = W_enc.T
    if "activation_function.threshold" in state:
        native["threshold"] = state.pop("activation_function.threshold")
    if "W_skip" in state:
        native["W_skip"] = take(state, "W_skip", 2, file).T
    return native


def _gemma_scope_2(state: dict[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    native = {
        "W_enc": take(state, "w_enc", 2, file),
        "W_dec": take(state, "w_dec", 2, file),
        "b_enc": take(state, "b_enc", 1, file),
        "b_dec": take(state, "b_dec", 1, file),
        "threshold": take(state, "threshold", 1, file),
    }
    if "affine_skip_connection" in state:
        native["W_skip"] = take(state, "affine_skip_connection", 2, file)
    return native
