"""The one interface every sparse dictionary implements.

A dictionary maps an activation ``x`` (``d_in``) to sparse features ``f`` (``d_sae``) and back
to a reconstruction ``x_hat`` (``d_out``; ``d_out == d_in`` except for a transcoder, which
reconstructs a different place than it reads):

    pre   = (x - b_dec * center_input) @ W_enc + b_enc        # (..., d_sae)
    f     = activation(pre)                                   # the architecture's rule
    x_hat = f @ W_dec + b_dec [+ x @ W_skip]                  # (..., d_out)

Every architecture shares the affine maps and differs only in ``activation`` (the gated SAE
also in its encoder). Weights are stored as ``W_enc (d_in, d_sae)``, ``W_dec (d_sae, d_out)``.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

__all__ = [
    "Dictionary",
    "DictionaryConfig",
    "DictionaryError",
    "DictionaryOutput",
    "register_architecture",
    "architecture_class",
    "ARCHITECTURES",
]


class DictionaryError(ValueError):
    """A dictionary that cannot be built, read or used as asked; the message names the file."""


class DictionaryOutput(NamedTuple):
    """What ``Dictionary.forward`` returns."""

    x_hat: torch.Tensor
    """Reconstruction, shape ``(..., d_out)``."""
    features: torch.Tensor
    """Feature activations, shape ``(..., d_sae)``."""


@dataclass
class DictionaryConfig:
    """Everything about a dictionary except its weights; stored as ``config.json``."""

    arch: str
    """Architecture name: one of ``ARCHITECTURES`` (relu, gated, topk, batchtopk, jumprelu)."""
    d_in: int
    """Width of the activation the dictionary reads."""
    d_sae: int
    """Number of features."""
    d_out: int | None = None
    """Width of what it reconstructs; ``None`` means ``d_in`` (every SAE)."""
    k: int | None = None
    """Active features per token (topk) or per token on average over a batch (batchtopk)."""
    center_input: bool = True
    """Subtract ``b_dec`` from the input before encoding (SAEs; never for transcoders)."""
    skip: bool = False
    """Has a linear skip connection ``x @ W_skip`` (skip transcoder)."""
    place: str | None = None
    """Where it reads in the model (``resid.3``, ``mlp_in.7``...)."""
    writes: str | None = None
    """Where a transcoder writes (``mlp.7``); ``None`` means it reconstructs ``place``."""
    model: str | None = None
    """Model it was trained on."""
    source_format: str = "native"
    """Format it was read from (native, dictionary_learning, saelens, gemma_scope...)."""
    training: dict[str, Any] = field(default_factory=dict)
    """Training settings, as the trainer recorded them."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Evaluation metrics (fvu, l0, dead_fraction...)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise DictionaryError(
                f"unknown dictionary architecture {self.arch!r}; known: {sorted(ARCHITECTURES)}"
            )
        if self.d_out is None:
            self.d_out = self.d_in
        for name in ("d_in", "d_sae", "d_out"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise DictionaryError(f"{name} must be a positive integer, got {value!r}")
        if self.arch in ("topk", "batchtopk"):
            if self.k is None or not 0 < self.k <= self.d_sae:
                raise DictionaryError(
                    f"{self.arch} needs 0 < k <= d_sae ({self.d_sae}), got k={self.k}"
                )
        if self.center_input and self.d_out != self.d_in:
            raise DictionaryError(
                "center_input needs d_out == d_in (b_dec lives in the input space)"
            )

    @property
    def is_transcoder(self) -> bool:
        return self.writes is not None and self.writes != self.place

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "config") -> DictionaryConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DictionaryError(f"{source}: unknown config fields {unknown}")
        try:
            return cls(**data)
        except TypeError as error:
            raise DictionaryError(f"{source}: {error}") from error


ARCHITECTURES: dict[str, type[Dictionary]] = {}


def register_architecture(name: str):
    """Class decorator: make an architecture loadable by the name in ``config.arch``."""

    def decorate(cls: type[Dictionary]) -> type[Dictionary]:
        cls.arch = name
        ARCHITECTURES[name] = cls
        return cls

    return decorate


def architecture_class(name: str) -> type[Dictionary]:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise DictionaryError(
            f"unknown dictionary architecture {name!r}; known: {sorted(ARCHITECTURES)}"
        ) from None


class Dictionary(nn.Module, ABC):
    """A sparse dictionary: ``encode``, ``decode``, ``forward``, ``save``/``load``.

    Subclasses implement ``activation(pre)``; the gated SAE overrides ``encode`` as well.
    """

    arch: ClassVar[str]
    WEIGHTS_FILE: ClassVar[str] = "weights.safetensors"
    CONFIG_FILE: ClassVar[str] = "config.json"

    def __init__(self, config: DictionaryConfig) -> None:
        super().__init__()
        self.config = config
        d_in, d_sae, d_out = config.d_in, config.d_sae, config.d_out
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_in, d_out)) if config.skip else None
        self.reset_parameters()

    # --- construction --------------------------------------------------------------------

    @classmethod
    def create(cls, d_in: int, d_sae: int, **config: Any) -> Dictionary:
        """A freshly initialised dictionary of this architecture."""
        return cls(DictionaryConfig(arch=cls.arch, d_in=d_in, d_sae=d_sae, **config))

    def reset_parameters(self) -> None:
        """Unit-norm decoder rows, encoder initialised as the decoder's transpose.

        Tied initialisation as in Gao et al. (2024) section 2.4 and the Gated SAE paper.
        """
        W_dec_FD = torch.randn(self.d_sae, self.d_out)
        W_dec_FD /= W_dec_FD.norm(dim=-1, keepdim=True)
        with torch.no_grad():
            self.W_dec.copy_(W_dec_FD)
            if self.d_in == self.d_out:
                self.W_enc.copy_(W_dec_FD.T)
            else:
                self.W_enc.copy_(torch.randn(self.d_in, self.d_sae) / self.d_in**0.5)

    # --- shapes ---------------------------------------------------------------------------

    @property
    def d_in(self) -> int:
        return self.config.d_in

    @property
    def d_sae(self) -> int:
        return self.config.d_sae

    @property
    def d_out(self) -> int:
        return self.config.d_out

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    # --- the maps -------------------------------------------------------------------------

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., d_in) -> (..., d_sae)``: the encoder's affine map."""
        if self.config.center_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    @abstractmethod
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """``(..., d_sae) -> (..., d_sae)``: the architecture's sparsifying rule."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., d_in) -> (..., d_sae)`` feature activations."""
        self._check_width(x, self.d_in, "input")
        return self.activation(self.pre_activation(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """``(..., d_sae) -> (..., d_out)``: the sparse part of the reconstruction.

        A skip transcoder adds ``skip(x)`` to this; ``forward`` does so.
        """
        return f @ self.W_dec + self.b_dec

    def skip_term(self, x: torch.Tensor) -> torch.Tensor | None:
        """``(..., d_in) -> (..., d_out)``: the skip connection, or ``None`` without one."""
        return None if self.W_skip is None else x @ self.W_skip

    def reconstruct(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``decode(f)`` plus the skip connection from the input ``x``, if any."""
        skip = self.skip_term(x)
        return self.decode(f) if skip is None else self.decode(f) + skip

    def forward(self, x: torch.Tensor) -> DictionaryOutput:
        f = self.encode(x)
        return DictionaryOutput(self.reconstruct(f, x), f)

    def _check_width(self, x: torch.Tensor, width: int, what: str) -> None:
        if x.shape[-1] != width:
            where = f" at {self.config.place}" if self.config.place else ""
            raise DictionaryError(
                f"{self.arch} dictionary{where} takes {what} width {width}, got {x.shape[-1]}"
            )

    # --- files ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into ``directory``, atomically."""
        from .native import save_native

        return save_native(self, directory)

    @classmethod
    def load(
        cls, directory: str | Path, *, device: str | torch.device | None = None, dtype=None
    ) -> Dictionary:
        """Read a dictionary folder in any supported format (see ``dictionaries.formats``)."""
        from .formats import load_dictionary

        dictionary = load_dictionary(directory, device=device, dtype=dtype)
        if cls is not Dictionary and not isinstance(dictionary, cls):
            raise DictionaryError(
                f"{directory}: holds a {dictionary.arch} dictionary, not {cls.arch}"
            )
        return dictionary

    def extra_repr(self) -> str:
        extra = f"arch={self.arch}, d_in={self.d_in}, d_sae={self.d_sae}"
        if self.d_out != self.d_in:
            extra += f", d_out={self.d_out}"
        if self.config.place:
            extra += f", place={self.config.place}"
        return extra


def config_from_file(path: Path) -> dict[str, Any]:
    """Read a JSON config file; a missing or malformed file raises one error naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DictionaryError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DictionaryError(f"{path}: not valid JSON ({error})") from None
