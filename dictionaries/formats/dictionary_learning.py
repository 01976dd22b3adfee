"""Reader and writer for saprmarks/dictionary_learning: a folder with ``ae.pt`` and ``config.json``.

``ae.pt`` is a state dict written by ``torch.save`` (read here with ``weights_only=True``).
``config.json`` is ``{"trainer": {"dict_class", "activation_dim", "dict_size", "k", "layer",
"lm_name", "submodule_name", ...}, "buffer": {...}}``. The old feature-circuits Pythia
dictionaries have ``{"dictionary": {"activation_dim", "dict_size", ...}, "buffer": {...}}`` or
no config at all; their class is then inferred from the keys and their shapes from the weights.
F = dict_size, D = activation_dim; ``nn.Linear`` stores ``(out, in)``, hence the transposes.

| dict_class             | keys                                                        | read as              |
|------------------------|-------------------------------------------------------------|----------------------|
| AutoEncoder            | encoder.weight (F,D), encoder.bias, decoder.weight (D,F), bias | relu, centred     |
| AutoEncoderNew         | encoder.weight, encoder.bias, decoder.weight, decoder.bias  | relu, not centred    |
| GatedAutoEncoder       | encoder.weight, decoder.weight, decoder_bias, r_mag, gate_bias, mag_bias | gated   |
| JumpReluAutoEncoder    | W_enc (D,F), b_enc, W_dec (F,D), b_dec, threshold (F)       | jumprelu, not centred |
| AutoEncoderTopK        | encoder.*, decoder.weight, b_dec, k (), threshold ()        | topk, centred        |
| BatchTopKSAE           | as AutoEncoderTopK                                          | batchtopk, centred   |
| MatryoshkaBatchTopKSAE | W_enc, b_enc, W_dec, b_dec, k, threshold, group_sizes       | batchtopk, centred   |

Conventions folded in: AutoEncoder encodes ``relu(encoder(x - bias))`` and decodes
``decoder(f) + bias``; the gated encoder shares one matrix (``gate_bias`` is our ``b_enc``).
``AutoEncoderTopK.encode`` keeps the top k per token by default, so its ``threshold`` buffer is
not used; ``BatchTopKSAE.encode`` defaults to ``relu(pre) * (relu(pre) > threshold)``, which is
our batchtopk at inference. ``JumpReluAutoEncoder.apply_b_dec_to_input`` is not saved and
defaults to False. Refused: unknown classes, and BatchTopKSAE files without a ``threshold``
buffer (early versions encode with a batch-dependent top-k).
Not reproduced: ``AutoEncoder.from_pretrained(normalize_decoder=True)`` of recent versions
rescales features by the decoder column norms; we keep the saved weights, so features are what
the module's own ``encode`` returns (reconstructions are identical either way).

``write`` uses the classes of dictionary_learning 0.1.0: relu -> AutoEncoder, gated ->
GatedAutoEncoder, jumprelu -> JumpReluAutoEncoder, topk -> AutoEncoderTopK, batchtopk ->
BatchTopKSAE (its ``threshold`` buffer set), each with the centring its class applies folded into
the encoder bias. It has no transcoders. ``AutoEncoder.from_pretrained`` normalises the decoder
by default, which rescales the features of a dictionary whose decoder rows are not unit norm.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from sparse_circuits.dictionaries.base import Dictionary
from sparse_circuits.dictionaries.config import DictionaryConfig, DictionaryError, config_from_file
from sparse_circuits.dictionaries.formats.common import (
    FormatCannotHold,
    encoder_weights,
    take,
)
from sparse_circuits.dictionaries.native import from_state_dict
from sparse_circuits.files import atomic_path, write_text_atomic

WEIGHTS_FILE = "ae.pt"
CONFIG_FILE = "config.json"

# submodule names: resid_post_layer_3, resid_3, mlp_out_3, mlp_out_layer3, attn_out_3, ...
_SUBMODULE = re.compile(r"^(resid|mlp|attn)(?:_(out|post|pre))?(?:_?layer)?_?(\d+)$")
# folder names of the feature-circuits dictionaries: resid_out_layer3/10_32768/ae.pt
_FOLDER = re.compile(r"^(?:embed|(?:resid|mlp|attn)_out_layer\d+)$")


def detect(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS_FILE).is_file()


def read(path: Path) -> Dictionary:
    weights = path / WEIGHTS_FILE
    state = _load_state(weights)
    raw = config_from_file(path / CONFIG_FILE) if (path / CONFIG_FILE).is_file() else {}
    if not isinstance(raw, dict):
        raise DictionaryError(f"{path / CONFIG_FILE}: expected a JSON object")
    block = raw.get("trainer", raw.get("dictionary", {}))
    if not isinstance(block, dict):
        raise DictionaryError(f"{path / CONFIG_FILE}: 'trainer' is not a JSON object")

    dict_class = block.get("dict_class") or _infer_class(state, weights)
    if dict_class == "AutoEncoder" and "decoder.bias" in state and "bias" not in state:
        # dictionary_learning's standard trainers record "AutoEncoder" whatever class they
        # trained; these keys are AutoEncoderNew's (seen with 0.1.0's StandardTrainerAprilUpdate)
        dict_class = "AutoEncoderNew"
    if dict_class not in _CONVERTERS:
        raise DictionaryError(
            f"{weights}: dictionary_learning class {dict_class!r} is not supported "
            f"(supported: {sorted(_CONVERTERS)})"
        )
    arch, center, native, k = _CONVERTERS[dict_class](dict(state), block, weights)
    d_in, d_sae = native["W_enc"].shape
    for key, value in (("activation_dim", d_in), ("dict_size", d_sae)):
        if block.get(key) is not None and block[key] != value:
            raise DictionaryError(
                f"{weights}: config.json says {key}={block[key]}, the weights say {value}"
            )
    try:
        config = DictionaryConfig(
            arch=arch,
            d_in=d_in,
            d_sae=d_sae,
            k=k,
            center_input=center,
            place=_place(block, path),
            model=block.get("lm_name"),
            source_format="dictionary_learning",
            training=raw,
        )
    except DictionaryError as error:
        raise DictionaryError(f"{weights}: {error}") from None
    return from_state_dict(config, native, source=str(weights))


def _load_state(weights: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt file or a pickle that is not plain weights
        raise DictionaryError(
            f"{weights}: not a readable weights-only torch file ({error})"
        ) from None
    if not isinstance(state, dict):
        raise DictionaryError(f"{weights}: expected a state dict, got {type(state).__name__}")
    # drop non-tensor entries (e.g. a saved hub config) and torch.compile's prefix
    return {
        str(key).removeprefix("_orig_mod."): value
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }


def _infer_class(state: dict[str, torch.Tensor], weights: Path) -> str:
    keys = set(state)
    if {"r_mag", "gate_bias", "mag_bias"} <= keys:
        return "GatedAutoEncoder"
    if "group_sizes" in keys:
        return "MatryoshkaBatchTopKSAE"
    if "W_enc" in keys and "k" not in keys:
        return "JumpReluAutoEncoder"
    if "bias" in keys:
        return "AutoEncoder"
    if "decoder.bias" in keys:
        return "AutoEncoderNew"
    raise DictionaryError(
        f"{weights}: cannot tell the dictionary class from the keys {sorted(keys)}; "
        "config.json needs trainer.dict_class"
    )


def _done(state: dict[str, torch.Tensor], weights: Path, dict_class: str) -> None:
    if state:
        raise DictionaryError(f"{weights}: unexpected keys {sorted(state)} for a {dict_class}")


def _k(state: dict[str, torch.Tensor], block: dict[str, Any], weights: Path) -> int:
    saved = int(take(state, "k", 0, weights).item()) if "k" in state else None
    configured = block.get("k")
    if saved is not None and configured is not None and saved != configured:
        raise DictionaryError(f"{weights}: k buffer is {saved}, config.json says k={configured}")
    k = saved if saved is not None else configured
    if not isinstance(k, int):
        raise DictionaryError(f"{weights}: no k in the weights or config.json")
    return k


def _autoencoder(state, block, weights):
    native = {
        "W_enc": take(state, "encoder.weight", 2, weights).T,
        "b_enc": take(state, "encoder.bias", 1, weights),
        "W_dec": take(state, "decoder.weight", 2, weights).T,
        "b_dec": take(state, "bias", 1, weights),
    }
    _done(state, weights, "AutoEncoder")
    return "relu", True, native, None


def _autoencoder_new(state, block, weights):
    native = {
        "W_enc": take(state, "encoder.weight", 2, weights).T,
        "b_enc": take(state, "encoder.bias", 1, weights),
        "W_dec": take(state, "decoder.weight", 2, weights).T,
        "b_dec": take(state, "decoder.bias", 1, weights),
    }
    _done(state, weights, "AutoEncoderNew")
    return "relu", False, native, None


def _gated(state, block, weights):
    native = {
        "W_enc": take(state, "encoder.weight", 2, weights).T,
        "b_enc": take(state, "gate_bias", 1, weights),
        "W_dec": take(state, "decoder.weight", 2, weights).T,
        "b_dec": take(state, "decoder_bias", 1, weights),
        "r_mag": take(state, "r_mag", 1, weights),
        "b_mag": take(state, "mag_bias", 1, weights),
    }
    _done(state, weights, "GatedAutoEncoder")
    return "gated", True, native, None


def _jumprelu(state, block, weights):
    native = {name: take(state, name, 2, weights) for name in ("W_enc", "W_dec")}
    native.update({name: take(state, name, 1, weights) for name in ("b_enc", "b_dec", "threshold")})
    _done(state, weights, "JumpReluAutoEncoder")
    return "jumprelu", False, native, None


def _topk(state, block, weights):
    k = _k(state, block, weights)
    state.pop("threshold", None)  # only used by encode(use_threshold=True), off by default
    native = {
        "W_enc": take(state, "encoder.weight", 2, weights).T,
        "b_enc": take(state, "encoder.bias", 1, weights),
        "W_dec": take(state, "decoder.weight", 2, weights).T,
        "b_dec": take(state, "b_dec", 1, weights),
    }
    _done(state, weights, "AutoEncoderTopK")
    return "topk", True, native, k


def _threshold(state, weights, dict_class):
    if "threshold" not in state:
        raise DictionaryError(
            f"{weights}: {dict_class} without a threshold buffer encodes with a batch-level "
            "top-k, which depends on the batch; it cannot be read as a per-token dictionary"
        )
    return take(state, "threshold", 0, weights)


def _batchtopk(state, block, weights):
    k = _k(state, block, weights)
    native = {
        "W_enc": take(state, "encoder.weight", 2, weights).T,
        "b_enc": take(state, "encoder.bias", 1, weights),
        "W_dec": take(state, "decoder.weight", 2, weights).T,
        "b_dec": take(state, "b_dec", 1, weights),
        "threshold": _threshold(state, weights, "BatchTopKSAE"),
    }
    _done(state, weights, "BatchTopKSAE")
    return "batchtopk", True, native, k


def _matryoshka(state, block, weights):
    k = _k(state, block, weights)
    native = {name: take(state, name, 2, weights) for name in ("W_enc", "W_dec")}
    native.update({name: take(state, name, 1, weights) for name in ("b_enc", "b_dec")})
    native["threshold"] = _threshold(state, weights, "MatryoshkaBatchTopKSAE")
    groups = take(state, "group_sizes", 1, weights)
    if int(groups.sum()) != native["W_enc"].shape[1]:
        raise DictionaryError(f"{weights}: group_sizes do not add up to dict_size")
    _done(state, weights, "MatryoshkaBatchTopKSAE")
    return "batchtopk", True, native, k


_CONVERTERS = {
    "AutoEncoder": _autoencoder,
    "AutoEncoderNew": _autoencoder_new,
    "GatedAutoEncoder": _gated,
    "JumpReluAutoEncoder": _jumprelu,
    "AutoEncoderTopK": _topk,
    "BatchTopKSAE": _batchtopk,
    "MatryoshkaBatchTopKSAE": _matryoshka,
}


def _place(block: dict[str, Any], path: Path) -> str | None:
    name = block.get("submodule_name")
    if isinstance(name, str):
        return _submodule_place(name)
    for folder in (path.name, path.parent.name):
        if _FOLDER.match(folder):
            return _submodule_place(folder)
    return None


def _submodule_place(name: str) -> str | None:
    """``resid_post_layer_3 -> resid.3``, ``mlp_out_3 -> mlp.3``, ``embed -> embed``."""
    if name == "embed":
        return "embed"
    match = _SUBMODULE.match(name)
    if match is None:
        return None
    kind, when, layer = match.group(1), match.group(2), int(match.group(3))
    if when == "pre":
        if kind != "resid":
            return None
        return "embed" if layer == 0 else f"resid.{layer - 1}"
    return f"{kind}.{layer}"


# the class each architecture is written as, and whether that class subtracts b_dec first
_WRITTEN_CLASSES = {
    "relu": ("AutoEncoder", True),
    "gated": ("GatedAutoEncoder", True),
    "jumprelu": ("JumpReluAutoEncoder", False),
    "topk": ("AutoEncoderTopK", True),
    "batchtopk": ("BatchTopKSAE", True),
}


def _submodule_name(place: str | None) -> str | None:
    """The inverse of ``_submodule_place``: ``resid.3 -> resid_post_layer_3``."""
    if place is None or place == "embed":
        return place
    kind, _, layer = place.partition(".")
    when = {"resid": "post", "mlp": "out", "attn": "out"}.get(kind)
    return f"{kind}_{when}_layer_{layer}" if when else None


def _written_state(dictionary: Dictionary, dict_class: str, center: bool):
    native = encoder_weights(dictionary, center_input=center)
    if dict_class == "JumpReluAutoEncoder":
        return {name: native[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
    state = {"encoder.weight": native["W_enc"].T, "decoder.weight": native["W_dec"].T}
    if dict_class == "AutoEncoder":
        state.update({"encoder.bias": native["b_enc"], "bias": native["b_dec"]})
    elif dict_class == "GatedAutoEncoder":
        state.update(
            decoder_bias=native["b_dec"],
            r_mag=native["r_mag"],
            gate_bias=native["b_enc"],
            mag_bias=native["b_mag"],
        )
    else:  # AutoEncoderTopK, BatchTopKSAE: int32 k and float32 threshold buffers
        state.update({"encoder.bias": native["b_enc"], "b_dec": native["b_dec"]})
        state["k"] = torch.tensor(dictionary.config.k, dtype=torch.int32)
        threshold = native["threshold"] if "threshold" in native else torch.tensor(-1.0)
        state["threshold"] = threshold.to(torch.float32)
    return state


def write(dictionary: Dictionary, directory: str | Path) -> Path:
    """Write ``dictionary`` as ``ae.pt`` + ``config.json``; the weights first, the config last."""
    config = dictionary.config
    if config.is_transcoder or config.skip or config.d_out != config.d_in:
        raise FormatCannotHold("dictionary_learning 0.1.0 has no transcoders")
    dict_class, center = _WRITTEN_CLASSES[config.arch]
    state = _written_state(dictionary, dict_class, center)
    trainer = {
        "dict_class": dict_class,
        "activation_dim": config.d_in,
        "dict_size": config.d_sae,
        "k": config.k,
        "lm_name": config.model,
        "submodule_name": _submodule_name(config.place),
        "converted_from": f"sparse-circuits {config.arch} ({config.source_format})",
    }
    trainer = {key: value for key, value in trainer.items() if value is not None}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        torch.save({name: t.detach().cpu().contiguous() for name, t in state.items()}, tmp)
    write_text_atomic(directory / CONFIG_FILE, json.dumps({"trainer": trainer}, indent=4))
    return directory
