"""Reader for circuit-tracer transcoders: per-layer ones (``layer_N.safetensors``, alone or as a
set) and cross-layer ones (``W_enc_N.safetensors`` + ``W_dec_N.safetensors``, below).

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

``config.yaml`` is circuit-tracer's transcoder config (``model_kind``, ``model_name``,
``feature_input_hook``, ``feature_output_hook``, ``scan``, ``transcoders``). Without it the
transcoder of layer N reads the MLP input and writes the MLP output: ``place = mlp_in.N``,
``writes = mlp.N``; with it, the hooks must name those two places (``mlp.hook_in`` or
``ln2.hook_normalized``; ``hook_mlp_out`` or ``mlp.hook_out``). Sets that read
``hook_resid_mid`` (the residual stream before the MLP's norm) have no place here and are refused.
A ``model_kind`` that contradicts the files is refused. Refused as well: negative thresholds.

Cross-layer transcoders (``model_kind: cross_layer_transcoder``), as
``CrossLayerTranscoder.to_safetensors`` writes them (D = d_model, F = d_transcoder, L layers):
per layer N, ``W_enc_N.safetensors`` with ``W_enc_N (F, D)`` used as ``x @ W_enc_N.T``,
``b_enc_N (F)``, ``b_dec_N (D)`` (the bias of output layer N) and, for JumpReLU,
``threshold_N (F)``; and ``W_dec_N.safetensors`` with ``W_dec_N (F, L - N, D)``, whose
``[:, M - N]`` is the decoder into output layer M >= N. circuit-tracer reconstructs output M
as ``sum_{N <= M} f_N @ W_dec_N[:, M - N] + b_dec_M`` (``compute_reconstruction``); it saves no
skip connection. The same hooks as a transcoder set's apply (without ``config.yaml``: each
layer reads ``mlp_in.N``; circuit-tracer's own default, ``hook_resid_mid``, is refused as
above). Layer N reads as one dictionary (``dictionaries.cross_layer``): ``place = mlp_in.N``,
``writes = mlp.N`` through ``W_dec = W_dec_N[:, 0]`` with ``b_dec = b_dec_N``,
``writes_later = [mlp.N+1, ...]`` through ``W_dec_later = W_dec_N[:, 1:]`` as
``(L - N - 1, F, D)``. A folder is a dictionary set of them (``set_members``: ``mlp.N`` ->
``W_enc_N.safetensors``, which ``read`` reads with its ``W_dec_N.safetensors``);
``dictionaries.cross_layer.load_cross_layer_transcoder`` holds them as one CLT.
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
_ENCODER_FILE = re.compile(r"^W_enc_(\d+)\.safetensors$")
_KINDS = {"transcoder_set": "layer_N.safetensors", "cross_layer_transcoder": "W_enc_N.safetensors"}
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
        return any(pattern.match(path.name) for pattern in (_LAYER_FILE, _ENCODER_FILE))
    return path.is_dir() and bool(_layer_files(path) or cross_layer_files(path))


def read(path: Path) -> Dictionary:
    file = _the_file(path)
    if _ENCODER_FILE.match(file.name):
        return _read_cross_layer(file, _settings(file.parent, "cross_layer_transcoder"))
    return _read_layer(file, _settings(file.parent, "transcoder_set"))


def set_members(directory: Path) -> dict[str, Path]:
    """``{place: file}`` for a folder of ``layer_N.safetensors`` files or of a cross-layer
    transcoder's ``W_enc_N.safetensors``, each keyed by the first place its features write
    (``mlp.N``); empty for any other folder."""
    files = _layer_files(directory) or cross_layer_files(directory)
    if not files:
        return {}
    _the_kind(directory)
    writes = _settings(directory).writes
    return {f"{writes}.{_layer(file)}": file for file in files}


def cross_layer_files(directory: Path) -> list[Path]:
    """A cross-layer transcoder folder's ``W_enc_N.safetensors``, layer N at index N (a gap in
    the layers is an error); empty for any other folder."""
    try:
        files = [p for p in directory.iterdir() if _ENCODER_FILE.match(p.name) and p.is_file()]
    except OSError:
        return []
    files.sort(key=_layer)
    layers = [_layer(file) for file in files]
    if layers != list(range(len(layers))):
        raise DictionaryError(
            f"{directory}: cross-layer transcoder files for layers {layers}, expected 0.."
            f"{len(layers) - 1} (W_enc_N.safetensors for every layer)"
        )
    return files


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
        native["threshold"] = _checked_threshold(native["threshold"], d_sae, file)
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


def _read_cross_layer(file: Path, settings: SetSettings) -> Dictionary:
    """Layer N of a cross-layer transcoder, from ``W_enc_N`` and the ``W_dec_N`` beside it."""
    layer, n_layers = _layer(file), len(cross_layer_files(file.parent))
    encoder = dict(read_safetensors(file, DictionaryError))
    W_enc = take(encoder, f"W_enc_{layer}", 2, file)
    native = {
        "W_enc": W_enc.T,
        "b_enc": take(encoder, f"b_enc_{layer}", 1, file),
        "b_dec": take(encoder, f"b_dec_{layer}", 1, file),
    }
    if f"threshold_{layer}" in encoder:
        native["threshold"] = encoder.pop(f"threshold_{layer}")
    if encoder:
        raise DictionaryError(f"{file}: unexpected keys {sorted(encoder)}")
    d_sae, d_model = native["b_enc"].shape[0], native["b_dec"].shape[0]
    if tuple(W_enc.shape) != (d_sae, d_model):
        raise DictionaryError(
            f"{file}: W_enc_{layer} has shape {tuple(W_enc.shape)}, expected (d_transcoder, "
            f"d_model) = {(d_sae, d_model)}"
        )
    decoder_file = file.with_name(f"W_dec_{layer}.safetensors")
    if not decoder_file.is_file():
        raise DictionaryError(f"{decoder_file}: file not found (the decoder of {file.name})")
    decoder = dict(read_safetensors(decoder_file, DictionaryError))
    W_dec = take(decoder, f"W_dec_{layer}", 3, decoder_file)  # (F, L - N, D)
    if decoder:
        raise DictionaryError(f"{decoder_file}: unexpected keys {sorted(decoder)}")
    if tuple(W_dec.shape) != (d_sae, n_layers - layer, d_model):
        raise DictionaryError(
            f"{decoder_file}: W_dec_{layer} has shape {tuple(W_dec.shape)}, expected "
            f"(d_transcoder, n_layers - {layer}, d_model) = {(d_sae, n_layers - layer, d_model)}"
        )
    native["W_dec"] = W_dec[:, 0]
    if n_layers - layer > 1:
        native["W_dec_later"] = W_dec[:, 1:].transpose(0, 1)  # (L - N - 1, F, D)
    if "threshold" in native:
        native["threshold"] = _checked_threshold(native["threshold"], d_sae, file)
    try:
        config = DictionaryConfig(
            arch="jumprelu" if "threshold" in native else "relu",
            d_in=d_model,
            d_sae=d_sae,
            center_input=False,
            place=f"{settings.reads}.{layer}",
            writes=f"{settings.writes}.{layer}",
            writes_later=[f"{settings.writes}.{m}" for m in range(layer + 1, n_layers)],
            model=settings.model,
            source_format="circuit_tracer",
        )
    except DictionaryError as error:
        raise DictionaryError(f"{file}: {error}") from None
    return from_state_dict(config, native, source=str(file))


def _checked_threshold(threshold: torch.Tensor, d_sae: int, file: Path) -> torch.Tensor:
    """A JumpReLU threshold ``(F,)`` (a 0-d one spread over every feature); negative ones are
    refused."""
    if threshold.ndim == 0:
        threshold = threshold.expand(d_sae).clone()
    if bool((threshold < 0).any()):
        raise DictionaryError(
            f"{file}: negative JumpReLU thresholds keep negative activations in "
            "circuit-tracer, which a ReLU-based jumprelu cannot reproduce"
        )
    return threshold


def _layer(file: Path) -> int:
    match = _LAYER_FILE.match(file.name) or _ENCODER_FILE.match(file.name)
    return int(match.group(1))


def _layer_files(directory: Path) -> list[Path]:
    try:
        files = [p for p in directory.iterdir() if _LAYER_FILE.match(p.name) and p.is_file()]
    except OSError:
        return []
    return sorted(files, key=_layer)


def _the_file(path: Path) -> Path:
    if not path.is_dir():
        if not detect(path):
            raise DictionaryError(f"{path}: not a layer_N.safetensors or W_enc_N.safetensors file")
        return path
    kind = _the_kind(path)
    files = _layer_files(path) if kind == "transcoder_set" else cross_layer_files(path)
    if len(files) != 1:
        names = [f.name for f in files]
        what = (
            "a transcoder set (one place per layer)"
            if kind == "transcoder_set"
            else "a cross-layer transcoder (one dictionary per layer, writing its own and "
            "every later layer)"
        )
        raise DictionaryError(
            f"{path}: holds {len(files)} layer files {names}, {what}: read it with "
            "load_dictionary_set, or pass the file of the layer you want"
        )
    return files[0]


def _the_kind(directory: Path) -> str:
    """``transcoder_set`` or ``cross_layer_transcoder``: what the folder's files are, which
    its ``config.yaml`` must not contradict."""
    has_layers, has_encoders = bool(_layer_files(directory)), bool(cross_layer_files(directory))
    if has_layers and has_encoders:
        raise DictionaryError(
            f"{directory}: holds both layer_N.safetensors (a transcoder set) and "
            "W_enc_N.safetensors (a cross-layer transcoder)"
        )
    kind = "transcoder_set" if has_layers else "cross_layer_transcoder"
    _settings(directory, kind)
    return kind


def _settings(directory: Path, kind: str | None = None) -> SetSettings:
    """The folder's ``config.yaml``, or the defaults when it has none; its ``model_kind``
    must be ``kind`` when both are given."""
    path = directory / SET_CONFIG
    if not path.is_file():
        return SetSettings()
    try:
        data = yaml.safe_load(read_utf8(path, DictionaryError))
    except yaml.YAMLError as error:
        raise DictionaryError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise DictionaryError(f"{path}: expected a YAML mapping")
    given = data.get("model_kind")
    if given is not None and given not in _KINDS:
        raise DictionaryError(f"{path}: model_kind {given!r} is not one of {', '.join(_KINDS)}")
    if kind is not None and given not in (None, kind):
        raise DictionaryError(
            f"{path}: model_kind is {given}, but the folder holds {_KINDS[kind]} files ({kind})"
        )
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
