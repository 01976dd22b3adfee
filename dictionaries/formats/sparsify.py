"""Reader and writer for EleutherAI sparsify (and its predecessor ``sae``): ``cfg.json`` + ``sae.safetensors``.

Weights (D = d_in, F = num_latents): ``encoder.weight (F, D)`` and ``encoder.bias (F)`` of an
``nn.Linear``, ``W_dec (F, D)``, ``b_dec (D)``, and for a skip connection ``W_skip (D, D)``,
applied as ``x @ W_skip.T``. ``cfg.json`` holds the ``SparseCoderConfig`` fields (``k``,
``num_latents`` or, when it is 0, ``expansion_factor``; ``activation``, ``transcode``,
``skip_connection``, ``normalize_decoder``, ``multi_topk``...) plus ``d_in`` (taken from the
weights when absent). Both kinds decode to ``D``: a transcoder's output has the input's width.

Encoder: ``top-k(relu((x - b_dec) @ encoder.weight.T + encoder.bias))``, where the ``b_dec``
subtraction happens only for autoencoders (``transcode`` false); a transcoder reads its input
as is. So: our ``topk`` with ``W_enc = encoder.weight.T``, ``center_input = not transcode``,
``W_skip = W_skip.T``. ``multi_topk`` only changes the training loss and is ignored.

The place comes from the folder, which sparsify names after the hookpoint: ``layers.3`` ->
``resid.3``, ``layers.3.mlp`` -> ``mlp.3`` (for a transcoder: reads ``mlp_in.3``, writes
``mlp.3``), ``layers.3.self_attn``/``attn``/``attention`` -> ``attn.3``; a module prefix such
as ``model.`` or ``gpt_neox.`` is allowed. The model is not recorded in these files.

Refused: the ``groupmax`` activation (and any other than ``topk``), and options that need inputs
other than the activation itself (``embed_skip``, ``gram_lookup``, ``normalize_io``, ``signed``).

``write`` handles what ``SparseCoder`` can hold: topk dictionaries whose output has the input's
width. An SAE is written with ``transcode=false`` (``b_dec`` subtracted: folded into
``encoder.bias`` if ours does not centre), a transcoder with ``transcode=true``. sparsify reads
the hookpoint from the folder name (``layers.3`` ...), so name the folder after it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, DictionaryError
from sparse_circuits.dictionaries.formats.common import (
    FormatCannotHold,
    encoder_weights,
    json_object,
    take,
)
from sparse_circuits.dictionaries.native import from_state_dict
from sparse_circuits.files import read_safetensors, write_safetensors, write_text_atomic

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"

_HOOKPOINT = re.compile(r"^(?:.*\.)?(?:layers|h)\.(\d+)(?:\.(mlp|self_attn|attn|attention))?$")
_UNSUPPORTED = ("embed_skip", "gram_lookup", "normalize_io", "signed")


def detect(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read(path: Path) -> Dictionary:
    cfg_path, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    cfg = json_object(cfg_path)
    _check_options(cfg, cfg_path)
    transcode = bool(cfg.get("transcode", False))

    state = dict(read_safetensors(weights, DictionaryError))
    native = {
        "W_enc": take(state, "encoder.weight", 2, weights).T,
        "b_enc": take(state, "encoder.bias", 1, weights),
        "W_dec": take(state, "W_dec", 2, weights),
        "b_dec": take(state, "b_dec", 1, weights),
    }
    skip = cfg.get("skip_connection")
    if skip or (skip is None and "W_skip" in state):
        native["W_skip"] = take(state, "W_skip", 2, weights).T
    if state:
        raise DictionaryError(f"{weights}: unexpected keys {sorted(state)}")

    d_in = cfg.get("d_in", native["W_enc"].shape[0])
    d_sae = cfg.get("num_latents") or _expanded(cfg, d_in)
    place, writes = _hookpoint_place(path.name, transcode)
    try:
        config = DictionaryConfig(
            arch="topk",
            d_in=d_in,
            d_sae=d_sae,
            k=cfg.get("k"),
            center_input=not transcode,
            skip="W_skip" in native,
            place=place,
            writes=writes,
            source_format="sparsify",
            training=cfg,
        )
    except DictionaryError as error:
        raise DictionaryError(f"{cfg_path}: {error}") from None
    return from_state_dict(config, native, source=str(weights))


def _check_options(cfg: dict[str, Any], cfg_path: Path) -> None:
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise DictionaryError(f"{cfg_path}: activation {activation!r} is not supported (only topk)")
    for option in _UNSUPPORTED:
        if cfg.get(option):
            raise DictionaryError(f"{cfg_path}: {option}=true is not supported")


def _expanded(cfg: dict[str, Any], d_in: Any) -> Any:
    factor = cfg.get("expansion_factor")
    if isinstance(factor, int) and isinstance(d_in, int):
        return d_in * factor
    return None


def _hookpoint_place(name: str, transcode: bool) -> tuple[str | None, str | None]:
    """``(place, writes)`` from a hookpoint folder name such as ``layers.3.mlp``."""
    match = _HOOKPOINT.match(name)
    if match is None:
        return None, None
    layer, module = int(match.group(1)), match.group(2)
    if transcode:
        # a transcoder on the MLP module reads its input and predicts its output
        return (f"mlp_in.{layer}", f"mlp.{layer}") if module == "mlp" else (None, None)
    if module is None:
        return f"resid.{layer}", None
    return (f"mlp.{layer}" if module == "mlp" else f"attn.{layer}"), None


def write(dictionary: Dictionary, directory: str | Path) -> Path:
    """Write a topk ``dictionary`` as a sparsify folder; the weights first, ``cfg.json`` last."""
    config = dictionary.config
    if config.arch != "topk":
        raise FormatCannotHold(f"sparsify holds only topk dictionaries, not {config.arch}")
    if config.d_out != config.d_in:
        raise FormatCannotHold(
            f"sparsify decodes to the input's width; this dictionary maps {config.d_in} -> "
            f"{config.d_out}"
        )
    transcode = config.is_transcoder
    native = encoder_weights(dictionary, center_input=not transcode)
    weights = {
        "encoder.weight": native["W_enc"].T,
        "encoder.bias": native["b_enc"],
        "W_dec": native["W_dec"],
        "b_dec": native["b_dec"],
    }
    if config.skip:
        weights["W_skip"] = native["W_skip"].T
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, config.d_sae // config.d_in),
        "normalize_decoder": True,
        "num_latents": config.d_sae,
        "k": config.k,
        "multi_topk": False,
        "skip_connection": config.skip,
        "transcode": transcode,
        "d_in": config.d_in,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(directory / WEIGHTS_FILE, weights)
    write_text_atomic(directory / CONFIG_FILE, json.dumps(cfg, indent=2))
    return directory
