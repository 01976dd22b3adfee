"""Reader and writer for SAELens: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

Weights (D = d_in, F = d_sae, O = d_out): ``W_enc (D, F)``, ``W_dec (F, D)``, ``b_dec (D)`` and
``b_enc (F)``; gated SAEs have ``b_gate``, ``r_mag``, ``b_mag`` instead of ``b_enc``; JumpReLU
SAEs add ``threshold (F)`` (``log_threshold`` in training checkpoints); transcoders have
``W_dec (F, O)``, ``b_dec (O)`` and skip transcoders ``W_skip (O, D)``, applied as
``x @ W_skip.T``. Older files may hold ``scaling_factor``/``finetuning_scaling_factor (F)``,
multiplied into the features before decoding: we fold it into ``W_dec``.

``cfg.json`` has ``d_in``, ``d_sae``, ``architecture`` (absent: ``standard``),
``apply_b_dec_to_input`` (absent: True; our ``center_input``), ``normalize_activations``, and
the hook and model either at top level (before 6.0: ``hook_name`` or ``hook_point``,
``model_name``, ``activation_fn_str`` + ``activation_fn_kwargs.k`` for TopK) or under
``metadata`` (6.0 on; ``k`` and ``rescale_acts_by_decoder_norm`` at top level for TopK).

Encoders: standard ``relu(pre)``; TopK ``relu`` of the k largest ``pre``; JumpReLU
``relu(pre) * (pre > threshold)``; gated ``1[(x-b) @ W_enc + b_gate > 0] *
relu((x-b) @ (W_enc * exp(r_mag)) + b_mag)``. A TopK SAE with
``rescale_acts_by_decoder_norm`` multiplies ``pre`` by the decoder row norms and divides them out
before decoding; we fold both into ``W_enc``, ``b_enc`` and ``W_dec``.

Refused: ``normalize_activations`` other than none (``expected_average_only_in`` needs a
dataset-level factor that is not in the files; ``constant_norm_rescale`` and ``layer_norm``
rescale every input at run time), activation functions other than relu/topk, and the
batch-dependent ``batchtopk``/``matryoshka_batchtopk`` training checkpoints.

``write`` produces the 6.x layout that ``SAE.load_from_disk`` reads: relu -> ``standard`` (or
``transcoder``/``skip_transcoder``), jumprelu -> ``jumprelu`` (or the jumprelu transcoders),
batchtopk -> ``jumprelu`` with its threshold on every feature (what SAELens's own
``save_inference_model`` does for batch top-k), topk -> ``topk`` and gated -> ``gated`` (SAEs
only). Transcoders never subtract ``b_dec``; that is folded into ``b_enc`` when needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, DictionaryError
from sparse_circuits.dictionaries.formats.common import (
    FormatCannotHold,
    encoder_weights,
    json_object,
)
from sparse_circuits.dictionaries.native import from_state_dict, stored_dtype
from sparse_circuits.files import read_safetensors, write_safetensors, write_text_atomic

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"

_ARCHS = {
    "standard": "relu",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "gated": "gated",
    "transcoder": "relu",
    "skip_transcoder": "relu",
    "jumprelu_transcoder": "jumprelu",
    "jumprelu_skip_transcoder": "jumprelu",
}
_HOOK_NAMES = {
    "resid": "hook_resid_post",
    "mlp": "hook_mlp_out",
    "attn": "hook_attn_out",
    "mlp_in": "ln2.hook_normalized",
}
_HOOK = re.compile(
    r"^blocks\.(\d+)\.(hook_resid_post|hook_resid_pre|hook_mlp_out|hook_attn_out|ln2\.hook_normalized)$"
)


def detect(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read(path: Path) -> Dictionary:
    cfg_path, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    cfg = json_object(cfg_path)
    metadata = cfg.get("metadata") or cfg.get("meta") or {}
    if not isinstance(metadata, dict):
        raise DictionaryError(f"{cfg_path}: 'metadata' is not a JSON object")
    meta = {**cfg, **metadata}
    architecture = _architecture(cfg, cfg_path)
    transcoder = "transcoder" in architecture
    _check_normalization(cfg, cfg_path)
    center = cfg.get("apply_b_dec_to_input", True)
    if not isinstance(center, bool) or (center and transcoder):
        raise DictionaryError(f"{cfg_path}: apply_b_dec_to_input={center!r} is not valid here")

    state = dict(read_safetensors(weights, DictionaryError))
    dtype = stored_dtype(state)  # the folds below work in float32
    native = _native_weights(state, architecture, weights)
    if architecture == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        _fold_decoder_norm(native, weights)

    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    hook = meta.get("hook_name", meta.get("hook_point"))
    head = meta.get("hook_head_index", meta.get("hook_point_head_index"))
    place = _hook_place(hook) if head is None else None
    try:
        config = DictionaryConfig(
            arch=_ARCHS[architecture],
            d_in=cfg.get("d_in"),
            d_sae=cfg.get("d_sae"),
            d_out=cfg.get("d_out") if transcoder else None,
            k=k if architecture == "topk" else None,
            center_input=center,
            skip="W_skip" in native,
            place=place,
            writes=_hook_place(meta.get("hook_name_out")) if transcoder else None,
            model=meta.get("model_name"),
            source_format="saelens",
            training=cfg,
        )
    except DictionaryError as error:
        raise DictionaryError(f"{cfg_path}: {error}") from None
    return from_state_dict(config, native, source=str(weights), dtype=dtype)


def _architecture(cfg: dict[str, Any], cfg_path: Path) -> str:
    architecture = cfg.get("architecture") or "standard"
    activation = cfg.get("activation_fn_str", cfg.get("activation_fn")) or "relu"
    if activation == "topk" and architecture in ("standard", "topk"):
        architecture = "topk"
    elif activation != "relu":
        raise DictionaryError(f"{cfg_path}: activation function {activation!r} is not supported")
    if architecture not in _ARCHS:
        raise DictionaryError(
            f"{cfg_path}: SAELens architecture {architecture!r} is not supported "
            f"(supported: {sorted(_ARCHS)}; batch top-k SAEs must be saved as inference "
            "JumpReLU SAEs)"
        )
    if cfg.get("normalize_decoder"):
        raise DictionaryError(f"{cfg_path}: normalize_decoder=true is not supported")
    return architecture


def _check_normalization(cfg: dict[str, Any], cfg_path: Path) -> None:
    mode = cfg.get("normalize_activations")
    if mode in (None, False, "none"):
        return
    raise DictionaryError(
        f"{cfg_path}: normalize_activations={mode!r} rescales inputs with statistics that are "
        "not stored in the weights (fold the scaling factor into the weights first)"
    )


def _take(state: dict[str, torch.Tensor], key: str, weights: Path) -> torch.Tensor:
    if key not in state:
        raise DictionaryError(f"{weights}: missing key {key!r} (has {sorted(state)})")
    return state.pop(key)


def _native_weights(state: dict[str, torch.Tensor], architecture: str, weights: Path):
    native = {"W_enc": _take(state, "W_enc", weights), "W_dec": _take(state, "W_dec", weights)}
    native["b_dec"] = _take(state, "b_dec", weights)
    if architecture == "gated":
        native["b_enc"] = _take(state, "b_gate", weights)
        native["r_mag"] = _take(state, "r_mag", weights)
        native["b_mag"] = _take(state, "b_mag", weights)
    else:
        native["b_enc"] = _take(state, "b_enc", weights)
    if "jumprelu" in architecture:
        if "log_threshold" in state:
            native["threshold"] = _take(state, "log_threshold", weights).float().exp()
        else:
            native["threshold"] = _take(state, "threshold", weights)
    if "skip" in architecture:
        skip = _take(state, "W_skip", weights)
        if skip.ndim != 2:
            raise DictionaryError(f"{weights}: W_skip has shape {tuple(skip.shape)}")
        native["W_skip"] = skip.T
    for key in ("scaling_factor", "finetuning_scaling_factor"):
        if key in state:
            scale = state.pop(key).float()
            if scale.shape != native["W_dec"].shape[:1]:
                raise DictionaryError(f"{weights}: {key} has shape {tuple(scale.shape)}")
            native["W_dec"] = native["W_dec"].float() * scale[:, None]
    if state:
        raise DictionaryError(f"{weights}: unexpected keys {sorted(state)} for {architecture}")
    return native


def _fold_decoder_norm(native: dict[str, torch.Tensor], weights: Path) -> None:
    """Fold ``pre * |W_dec row|`` (encode) and ``f / |W_dec row|`` (decode) into the weights."""
    W_dec = native["W_dec"].float()
    if W_dec.ndim != 2 or native["W_enc"].ndim != 2:
        raise DictionaryError(f"{weights}: W_enc and W_dec must be matrices")
    norms = W_dec.norm(dim=-1)
    if not bool((norms > 0).all()):
        raise DictionaryError(f"{weights}: a decoder row has zero norm; cannot fold the rescaling")
    native["W_enc"] = native["W_enc"].float() * norms
    native["b_enc"] = native["b_enc"].float() * norms
    native["W_dec"] = W_dec / norms[:, None]


def _hook_place(hook: Any) -> str | None:
    """``blocks.3.hook_resid_post -> resid.3``; ``None`` for hooks with no place name."""
    match = _HOOK.match(hook) if isinstance(hook, str) else None
    if match is None:
        return None
    layer, name = int(match.group(1)), match.group(2)
    if name == "hook_resid_pre":
        return "embed" if layer == 0 else f"resid.{layer - 1}"
    kind = {"hook_resid_post": "resid", "hook_mlp_out": "mlp", "hook_attn_out": "attn"}
    return f"{kind.get(name, 'mlp_in')}.{layer}"


def _hook_name(place: str | None) -> str | None:
    """The inverse of ``_hook_place``: ``resid.3 -> blocks.3.hook_resid_post``."""
    if place is None:
        return None
    if place == "embed":
        return "blocks.0.hook_resid_pre"
    kind, _, layer = place.partition(".")
    return f"blocks.{layer}.{_HOOK_NAMES[kind]}" if kind in _HOOK_NAMES else None


def _written_architecture(dictionary: Dictionary) -> str:
    config = dictionary.config
    transcoder = config.is_transcoder or config.skip or config.d_out != config.d_in
    if config.arch in ("relu", "jumprelu", "batchtopk"):
        base = "standard" if config.arch == "relu" else "jumprelu"
        if not transcoder:
            return base
        prefix = "" if base == "standard" else "jumprelu_"
        return f"{prefix}{'skip_' if config.skip else ''}transcoder"
    if transcoder:
        raise FormatCannotHold(
            f"SAELens has no {config.arch} transcoder (it has relu and jumprelu transcoders)"
        )
    return config.arch


def write(dictionary: Dictionary, directory: str | Path) -> Path:
    """Write ``dictionary`` as a SAELens 6.x folder; the weights first, ``cfg.json`` last."""
    config = dictionary.config
    architecture = _written_architecture(dictionary)
    transcoder = "transcoder" in architecture
    center = config.center_input and not transcoder
    native = encoder_weights(dictionary, center_input=center)
    weights = {"W_enc": native["W_enc"], "W_dec": native["W_dec"], "b_dec": native["b_dec"]}
    weights["b_gate" if architecture == "gated" else "b_enc"] = native["b_enc"]
    if architecture == "gated":
        weights.update(r_mag=native["r_mag"], b_mag=native["b_mag"])
    if "jumprelu" in architecture:
        weights["threshold"] = native["threshold"].expand(config.d_sae).clone()
    if config.skip:
        weights["W_skip"] = native["W_skip"].T
    metadata = {
        # marks the 6.x layout, so SAELens does not rewrite it as a pre-6.0 config
        "sae_lens_version": "6.0.0",
        "model_name": config.model,
        "hook_name": _hook_name(config.place),
        "converted_from": f"sparse-circuits {config.arch} ({config.source_format})",
    }
    if transcoder:
        metadata["hook_name_out"] = _hook_name(config.writes or config.place)
    cfg: dict[str, Any] = {
        "architecture": architecture,
        "d_in": config.d_in,
        "d_sae": config.d_sae,
        "dtype": str(dictionary.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": center,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {key: value for key, value in metadata.items() if value is not None},
    }
    if transcoder:
        cfg["d_out"] = config.d_out
    if architecture == "topk":
        cfg.update(k=config.k, rescale_acts_by_decoder_norm=False)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(directory / WEIGHTS_FILE, weights)
    write_text_atomic(directory / CONFIG_FILE, json.dumps(cfg, indent=2))
    return directory
