"""Reader for circuit-tracer per-layer transcoders: ``layer_N.safetensors``, alone or as a set.

``path`` is one file, or a folder holding exactly one ``layer_N.safetensors``. A folder with
several (what ``TranscoderSet.to_safetensors`` writes) is a dictionary set: ``set_members``
maps each file to the place it writes, and ``dictionaries.sets.load_dictionary_set`` reads it.

The keys written by ``SingleLayerTranscoder.to_safetensors`` (D = d_model, F = d_transcoder):
``W_enc (F, D)`` used as ``F.linear(x, W_enc, b_enc)``, ``b_enc (F)``, ``W_dec (F, D)``,
``b_dec (D)``, optional ``activation_function.threshold (F)`` (JumpReLU) and optional
``W_skip (D, D)`` used as ``x @ W_skip.T``. The Gemma Scope 2 spelling read by
``load_gemma_scope_2_transcoder`` is accepted too: ``w_enc (D, F)``, ``w_dec``, ``b_enc``,
``b_dec``, ``threshold`` and ``affine_skip_connection (D, D)`` used as ``x @ asc``.

circuit-tracer never subtracts ``b_dec`` from the input (``center_input=False``). Its
activations are ``relu(pre)`` without a threshold, ``pre * (pre > threshold)`` for JumpReLU
(no ReLU: equal to ours exactly when every threshold is >= 0), and for TopK the k largest
``pre`` kept with their sign: our topk with ``signed=True``. We store ``W_enc.T`` and
``W_skip.T``.

TopK: circuit-tracer 0.5.0's ``TopK(k)`` has no parameters, so ``to_safetensors`` saves no
``k`` and its own loader reads the file back as ReLU. We take ``k`` from a 0-d ``k`` tensor in the
file or from a ``k`` key in the folder's ``config.yaml``; a file with neither loads as ReLU with
a warning, since a TopK file looks exactly like a ReLU one.

``config.yaml`` is circuit-tracer's transcoder-set config (``model_kind``, ``model_name``,
``feature_input_hook``, ``feature_output_hook``, ``scan``, ``transcoders``). Without it the
transcoder of layer N reads the MLP input and writes the MLP output: ``place = mlp_in.N``,
``writes = mlp.N``; with it, the hooks must name those two places (``mlp.hook_in`` or
``ln2.hook_normalized``; ``hook_mlp_out`` or ``mlp.hook_out``). Sets that read
``hook_resid_mid`` (the residual stream before the MLP's norm) have no place here and are refused.

Refused as well: negative thresholds, and cross-layer transcoders (``W_enc_N.safetensors`` +
``W_dec_N.safetensors``, or ``model_kind: cross_layer_transcoder``): a feature of theirs writes
every later layer, a dictionary kind this project does not have yet.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, DictionaryError
from sparse_circuits.dictionaries.formats.common import take
from sparse_circuits.dictionaries.native import from_state_dict
from sparse_circuits.files import read_safetensors, read_utf8

SET_CONFIG = "config.yaml"
_LAYER_FILE = re.compile(r"^layer_(\d+)\.safetensors$")
_CROSS_LAYER_FILE = re.compile(r"^W_(?:enc|dec)_\d+\.safetensors$")
_INPUT_HOOKS = {"mlp.hook_in": "mlp_in", "ln2.hook_normalized": "mlp_in"}
_OUTPUT_HOOKS = {"hook_mlp_out": "mlp", "mlp.hook_out": "mlp"}


@dataclass(frozen=True)
class SetSettings:
    """What a folder's ``config.yaml`` says about every transcoder in it."""

    reads: str = "mlp_in"
    """Place kind the transcoders read (``mlp_in``)."""
    writes: str = "mlp"
    """Place kind they write (``mlp``)."""
    k: int | None = None
    """TopK's ``k``, which circuit-tracer does not save."""
    model: str | None = None
    """``model_name``."""


def detect(path: Path) -> bool:
    if path.is_file():
        return _LAYER_FILE.match(path.name) is not None
    return path.is_dir() and bool(_layer_files(path) or _cross_layer_files(path))


def read(path: Path) -> Dictionary:
    file = _the_file(path)
    return _read_layer(file, _settings(file.parent))


def set_members(directory: Path) -> dict[str, Path]:
    """``{place: file}`` for a folder of ``layer_N.safetensors`` files, each keyed by the place
    its transcoder writes (``mlp.N``); empty for any other folder."""
    files = _layer_files(directory)
    if not files:
        return {}
    writes = _settings(directory).writes
    return {f"{writes}.{_layer(file)}": file for file in files}


def _read_layer(file: Path, settings: SetSettings) -> Dictionary:
    layer = _layer(file)
    state = dict(read_safetensors(file, DictionaryError))
    native = _gemma_scope_2(state, file) if "w_enc" in state else _circuit_tracer(state, file)
    k = _k(state, settings, file)
    if state:
        raise DictionaryError(f"{file}: unexpected keys {sorted(state)}")

    d_sae, d_model = native["b_enc"].shape[0], native["b_dec"].shape[0]
    if "threshold" in native:
        if k is not None:
            raise DictionaryError(f"{file}: has both a JumpReLU threshold and a TopK k")
        threshold = native["threshold"]
        if threshold.ndim == 0:
            native["threshold"] = threshold.expand(d_sae).clone()
        if bool((threshold < 0).any()):
            raise DictionaryError(
                f"{file}: negative JumpReLU thresholds keep negative activations in "
                "circuit-tracer, which a ReLU-based jumprelu cannot reproduce"
            )
    elif k is None:
        warnings.warn(
            f"{file.parent}: circuit-tracer transcoders without a threshold load as ReLU; "
            f"a TopK transcoder's file looks the same (circuit-tracer saves no k): if these "
            f"are TopK, put 'k: <k>' in {file.parent / SET_CONFIG}",
            stacklevel=2,
        )
    arch = "jumprelu" if "threshold" in native else "relu" if k is None else "topk"
    try:
        config = DictionaryConfig(
            arch=arch,
            d_in=d_model,
            d_sae=d_sae,
            k=k,
            signed=k is not None,
            center_input=False,
            skip="W_skip" in native,
            place=f"{settings.reads}.{layer}",
            writes=f"{settings.writes}.{layer}",
            model=settings.model,
            source_format="circuit_tracer",
        )
    except DictionaryError as error:
        raise DictionaryError(f"{file}: {error}") from None
    return from_state_dict(config, native, source=str(file))


def _layer(file: Path) -> int:
    return int(_LAYER_FILE.match(file.name).group(1))


def _layer_files(directory: Path) -> list[Path]:
    try:
        files = [p for p in directory.iterdir() if _LAYER_FILE.match(p.name) and p.is_file()]
    except OSError:
        return []
    return sorted(files, key=_layer)


def _cross_layer_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if _CROSS_LAYER_FILE.match(p.name))
    except OSError:
        return []


def _the_file(path: Path) -> Path:
    if not path.is_dir():
        if _LAYER_FILE.match(path.name) is None:
            raise DictionaryError(f"{path}: not a layer_N.safetensors file")
        return path
    if _cross_layer_files(path) and not _layer_files(path):
        raise _cross_layer_refusal(path)
    files = _layer_files(path)
    if len(files) != 1:
        names = [f.name for f in files]
        raise DictionaryError(
            f"{path}: holds {len(files)} layer files {names}, a transcoder set (one place per "
            "layer): read it with load_dictionary_set, or pass the file of the layer you want"
        )
    return files[0]


def _cross_layer_refusal(path: Path) -> DictionaryError:
    return DictionaryError(
        f"{path}: a circuit-tracer cross-layer transcoder (each feature writes every later "
        "layer); cross-layer transcoders are not supported yet"
    )


def _settings(directory: Path) -> SetSettings:
    """The folder's ``config.yaml``, or the defaults when it has none."""
    path = directory / SET_CONFIG
    if not path.is_file():
        return SetSettings()
    try:
        data = yaml.safe_load(read_utf8(path, DictionaryError))
    except yaml.YAMLError as error:
        raise DictionaryError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise DictionaryError(f"{path}: expected a YAML mapping")
    if data.get("model_kind") == "cross_layer_transcoder":
        raise _cross_layer_refusal(path)
    reads = _hook_kind(data, "feature_input_hook", _INPUT_HOOKS, "mlp_in", path)
    writes = _hook_kind(data, "feature_output_hook", _OUTPUT_HOOKS, "mlp", path)
    k = data.get("k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k <= 0):
        raise DictionaryError(f"{path}: k must be a positive integer, got {k!r}")
    return SetSettings(reads=reads, writes=writes, k=k, model=data.get("model_name"))


def _hook_kind(data: dict, key: str, known: dict[str, str], default: str, path: Path) -> str:
    hook = data.get(key)
    if hook is None:
        return default
    if hook not in known:
        raise DictionaryError(
            f"{path}: {key} {hook!r} has no place name here (known: {', '.join(known)})"
        )
    return known[hook]


def _k(state: dict[str, torch.Tensor], settings: SetSettings, file: Path) -> int | None:
    saved = int(take(state, "k", 0, file).item()) if "k" in state else None
    if saved is not None and settings.k is not None and saved != settings.k:
        raise DictionaryError(
            f"{file}: k is {saved}, {file.parent / SET_CONFIG} says k={settings.k}"
        )
    return saved if saved is not None else settings.k


def _circuit_tracer(state: dict[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
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
