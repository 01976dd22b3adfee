"""The one interface every sparse dictionary implements.

A dictionary maps an activation ``x`` (``d_in``) to sparse features ``f`` (``d_sae``) and back
to a reconstruction ``x_hat`` (``d_out``; ``d_out == d_in`` except for a transcoder, which
reconstructs a different place than it reads):

    pre   = (x - b_dec * center_input) @ W_enc + b_enc        # (..., d_sae)
    f     = activation(pre)                                   # the architecture's rule
    x_hat = f @ W_dec + b_dec [+ x @ W_skip]                  # (..., d_out)

One layer of a cross-layer transcoder (``config.writes_later``) also writes later places,
``f @ W_dec_later[i]`` into the i-th of them (no bias; ``decode_at``); its ``x_hat`` above is
only its share of the first place it writes (``dictionaries.cross_layer``).

Every architecture shares the affine maps and differs only in ``activation`` (the gated SAE
also in its encoder). Weights are stored as ``W_enc (d_in, d_sae)``, ``W_dec (d_sae, d_out)``.

The maps run in the dictionary's dtype (inputs are cast to it): a bfloat16 dictionary encodes
and decodes in bfloat16, where the products' long sums (over ``d_in`` and ``d_sae``) accumulate
in float32 inside the matmul kernels and only their results round to bfloat16
(``tests/test_precision.py`` checks it), and the rules compare bfloat16 numbers with
bfloat16 thresholds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from sparse_circuits.dictionaries.config import (
    ARCHITECTURES,
    DictionaryConfig,
    DictionaryError,
    architecture_class,
    register_architecture,
)
from sparse_circuits.dictionaries.native import save_native

__all__ = [
    "ARCHITECTURES",
    "Dictionary",
    "DictionaryConfig",
    "DictionaryError",
    "DictionaryOutput",
    "architecture_class",
    "register_architecture",
]


class DictionaryOutput(NamedTuple):
    """What ``Dictionary.forward`` returns."""

    x_hat: torch.Tensor
    """Reconstruction, shape ``(..., d_out)``."""
    features: torch.Tensor
    """Feature activations, shape ``(..., d_sae)``."""


class Dictionary(nn.Module, ABC):
    """A sparse dictionary: ``encode``, ``decode``, ``forward``, ``save`` (read any format back with
    ``dictionaries.load_dictionary``).

    Subclasses implement ``activation(pre)``; the gated SAE overrides ``encode`` as well.
    """

    arch: ClassVar[str]

    def __init__(self, config: DictionaryConfig) -> None:
        super().__init__()
        self.config = config
        d_in, d_sae, d_out = config.d_in, config.d_sae, config.d_out
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_in, d_out)) if config.skip else None
        n_later = len(config.writes_later)
        self.W_dec_later = (
            nn.Parameter(torch.empty(n_later, d_sae, d_out)) if n_later else None
        )  # (n_later, d_sae, d_out)
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
            if self.W_dec_later is not None:
                W_later_LFD = torch.randn(self.W_dec_later.shape)
                self.W_dec_later.copy_(W_later_LFD / W_later_LFD.norm(dim=-1, keepdim=True))
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
        x = x.to(self.dtype)
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
        return f.to(self.dtype) @ self.W_dec + self.b_dec

    def decode_at(self, f: torch.Tensor, index: int) -> torch.Tensor:
        """``(..., d_sae) -> (..., d_out)``: what the features write into the ``index``-th of
        ``config.written_places()``: ``decode(f)`` for the first, ``f @ W_dec_later[index - 1]``
        (no bias) for a later one."""
        if index == 0:
            return self.decode(f)
        return f.to(self.dtype) @ self.W_dec_later[index - 1]

    def decoder(self, index: int) -> torch.Tensor:
        """``(d_sae, d_out)``: the decoder into the ``index``-th written place."""
        return self.W_dec if index == 0 else self.W_dec_later[index - 1]

    def skip_term(self, x: torch.Tensor) -> torch.Tensor | None:
        """``(..., d_in) -> (..., d_out)``: the skip connection, or ``None`` without one."""
        return None if self.W_skip is None else x.to(self.dtype) @ self.W_skip

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
        return save_native(self, directory)

    def extra_repr(self) -> str:
        extra = f"arch={self.arch}, d_in={self.d_in}, d_sae={self.d_sae}"
        if self.d_out != self.d_in:
            extra += f", d_out={self.d_out}"
        if self.config.place:
            extra += f", place={self.config.place}"
        return extra
