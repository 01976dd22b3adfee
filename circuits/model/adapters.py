"""Where each place name lives in each supported architecture.

Architecture differences live here, as data: one ``ArchitectureSpec`` per family says which
module (and which element of its input or output) holds each place. ``ModelAdapter`` binds a
spec to a loaded nnsight model and is the only code that reads or writes places inside a trace.

To add an architecture: write an ``ArchitectureSpec`` for it (look at the model's decoder-layer
``forward`` in transformers to see which module adds what to the residual stream) and add its
``config.model_type`` to ``SPECS``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import torch

from sparse_circuits.circuits.model.places import (
    Place,
    PlaceError,
    all_places,
    forward_order,
    parse_place,
)

__all__ = ["Site", "ArchitectureSpec", "ModelAdapter", "SPECS", "spec_for", "UnsupportedModelError"]


class UnsupportedModelError(ValueError):
    """A model whose ``config.model_type`` has no adapter."""


@dataclass(frozen=True)
class Site:
    """One value in the forward pass: a module's output or input, or one element of it."""

    path: str
    """Dotted module path; inside a block it is relative to the block ("" = the block itself)."""
    io: Literal["output", "input"] = "output"
    index: int | None = None
    """Element of a tuple output (attention modules return ``(hidden, weights)``)."""


@dataclass(frozen=True)
class ArchitectureSpec:
    layers: str
    """Dotted path of the ``ModuleList`` of blocks."""
    embed: Site
    """Absolute site of the residual stream entering block 0."""
    attn: Site
    mlp: Site
    mlp_in: Site
    resid: Site = Site("")
    final_norm: str | None = None
    """Absolute path of the norm before the unembedding."""
    parallel_attn_flag: str | None = None
    """Config attribute that makes attention and MLP read the same input (GPT-NeoX)."""


_LLAMA = ArchitectureSpec(
    layers="model.layers",
    embed=Site("model.embed_tokens"),
    attn=Site("self_attn", index=0),
    mlp=Site("mlp"),
    mlp_in=Site("mlp", "input"),
    final_norm="model.norm",
)
# Gemma 2 and 3 normalise each sublayer's output before adding it to the residual stream, so
# what attention and MLP add is the output of the post-norms; the embedding module scales.
_GEMMA = ArchitectureSpec(
    layers="model.layers",
    embed=Site("model.embed_tokens"),
    attn=Site("post_attention_layernorm"),
    mlp=Site("post_feedforward_layernorm"),
    mlp_in=Site("mlp", "input"),
    final_norm="model.norm",
)
_GPT2 = ArchitectureSpec(
    layers="transformer.h",
    embed=Site("transformer.drop"),
    attn=Site("attn", index=0),
    mlp=Site("mlp"),
    mlp_in=Site("mlp", "input"),
    final_norm="transformer.ln_f",
)
_GPT_NEOX = ArchitectureSpec(
    layers="gpt_neox.layers",
    embed=Site("gpt_neox.emb_dropout"),
    attn=Site("attention", index=0),
    mlp=Site("mlp"),
    mlp_in=Site("mlp", "input"),
    final_norm="gpt_neox.final_layer_norm",
    parallel_attn_flag="use_parallel_residual",
)

SPECS: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "gemma2": _GEMMA,
    "gemma3_text": _GEMMA,
    "gpt2": _GPT2,
    "gpt_neox": _GPT_NEOX,
}


def spec_for(model_type: str) -> ArchitectureSpec:
    try:
        return SPECS[model_type]
    except KeyError:
        raise UnsupportedModelError(
            f"no adapter for model_type {model_type!r} (supported: {', '.join(sorted(SPECS))}). "
            "To add one, write an ArchitectureSpec in circuits/adapters.py naming the modules "
            "that hold embed, attn.L, mlp.L, mlp_in.L and resid.L, and register it in SPECS."
        ) from None


def torch_module(model: Any) -> torch.nn.Module:
    """The torch module an nnsight model wraps (a plain torch module is returned as it is).

    The one place that reaches into nnsight's wrapper for it."""
    return getattr(model, "_module", model)


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter (nnsight-wrapped or plain); CPU without any."""
    parameter = next(torch_module(model).parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def model_dtype(model: Any) -> torch.dtype:
    """The dtype of a model's matrix products: its input embedding's weights (a plain torch
    module: its first floating-point parameter); float32 without any. Under mixed precision
    the activations are float32 whatever this is (``circuits.model.mixed_precision``)."""
    module = torch_module(model)
    if hasattr(module, "get_input_embeddings"):
        return module.get_input_embeddings().weight.dtype
    parameters = module.parameters()
    return next((p.dtype for p in parameters if p.is_floating_point()), torch.float32)


def _walk(root: Any, dotted: str) -> Any:
    for part in filter(None, dotted.split(".")):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


class ModelAdapter:
    """Reads and writes places of one loaded model; built by ``circuits.models.load_model``.

    ``read``/``write`` run inside ``model.trace(...)`` and, as nnsight requires, must be called
    in forward order (``forward_order`` sorts place names).
    """

    def __init__(self, model: Any, spec: ArchitectureSpec) -> None:
        self.model = model
        self.spec = spec
        config = model.config
        self.model_type: str = config.model_type
        self.n_layers: int = config.num_hidden_layers
        self.d_model: int = config.hidden_size
        self.parallel_attn: bool = bool(
            spec.parallel_attn_flag and getattr(config, spec.parallel_attn_flag, False)
        )

    @property
    def device(self) -> torch.device:
        """Where the model's (first) weights live."""
        return model_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's matrix products (``model_dtype``)."""
        return model_dtype(self.model)

    # --- names ----------------------------------------------------------------------------

    @property
    def places(self) -> list[str]:
        """Every place name, in forward order."""
        return all_places(self.n_layers)

    def parse(self, name: str) -> Place:
        return parse_place(name, self.n_layers)

    def sort(self, names) -> list[str]:
        return forward_order(names, self.n_layers)

    def width(self, name: str) -> int:
        """Width of the activation at a place (every place lives in the model dimension)."""
        self.parse(name)
        return self.d_model

    def site(self, name: str) -> Site:
        """The absolute site holding a place."""
        place = self.parse(name)
        if place.kind == "embed":
            return self.spec.embed
        relative: Site = getattr(self.spec, place.kind)
        path = ".".join(filter(None, [self.spec.layers, str(place.layer), relative.path]))
        return Site(path, relative.io, relative.index)

    def module(self, name: str) -> torch.nn.Module:
        """The underlying torch module holding a place (for plain PyTorch hooks)."""
        return _walk(torch_module(self.model), self.site(name).path)

    # --- inside a trace ---------------------------------------------------------------------

    def _envoy(self, site: Site) -> Any:
        return _walk(self.model, site.path)

    def read(self, name: str) -> torch.Tensor:
        """The activation at a place, ``(batch, pos, d_model)``; call inside a trace."""
        site = self.site(name)
        value = getattr(self._envoy(site), site.io)
        return value if site.index is None else value[site.index]

    def write(self, name: str, value: torch.Tensor) -> None:
        """Replace the activation at a place; call inside a trace, after ``read`` of it."""
        site = self.site(name)
        if site.io != "output":
            raise PlaceError(f"{name} is a module input; only outputs can be replaced")
        envoy = self._envoy(site)
        if site.index is None:
            envoy.output = value
        else:
            old = envoy.output
            envoy.output = (*old[: site.index], value, *old[site.index + 1 :])

    def skip_blocks(self, outputs: list[torch.Tensor]) -> None:
        """Skip blocks ``0 .. len(outputs) - 1``, using ``outputs[i]`` as block ``i``'s output
        (the cached residual stream ``resid.i``): the computation upstream is not redone.
        Call inside a trace, before anything else."""
        for layer, output in enumerate(outputs):
            _walk(self.model, f"{self.spec.layers}.{layer}").skip(output)

    def forward_kwargs(self, *, last_position_only: bool) -> dict:
        """Keyword arguments for ``model.trace``: unembed only the last position when the
        metric reads nothing else (saves most of the unembedding on large vocabularies)."""
        if (
            last_position_only
            and "logits_to_keep" in inspect.signature(torch_module(self.model).forward).parameters
        ):
            return {"logits_to_keep": 1}
        return {}

    def __repr__(self) -> str:
        return (
            f"ModelAdapter(model_type={self.model_type!r}, n_layers={self.n_layers}, "
            f"d_model={self.d_model})"
        )
