"""Cross-layer transcoders (CLTs; Ameisen et al. 2025, "Circuit Tracing", the architecture of
circuit-tracer's ``CrossLayerTranscoder``): the features of layer N read the MLP input of layer
N and write the MLP output of layer N and of every later layer.

A CLT of L layers is held as its layers, one dictionary each: layer N reads
``place = mlp_in.N``, writes ``writes = mlp.N`` through ``W_dec`` with the bias ``b_dec`` of
mlp.N, and ``writes_later = [mlp.N+1, ..., mlp.L-1]`` through ``W_dec_later`` (no bias). As a
dictionary set (``members``, what ``load_dictionary_set`` gives for a CLT folder) the layers
splice together: ``circuits.model.splice`` replaces each ``mlp.M`` by the sum of what every
layer N <= M writes into it, plus the error. ``CrossLayerTranscoder`` holds them together and
gives the maps over every layer at once, as circuit-tracer's class does:

    f[N]     = activation_N(x[N] @ W_enc_N + b_enc_N)          # (L, ..., d_sae)
    x_hat[M] = sum_{N <= M} f[N] @ W_dec_{N->M} + b_dec_M        # (L, ..., d_out)

with ``W_dec_{N->N} = layers[N].W_dec`` and ``W_dec_{N->M} = layers[N].W_dec_later[M-N-1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sparse_circuits.dictionaries.base import Dictionary, DictionaryError, DictionaryOutput
from sparse_circuits.dictionaries.formats import circuit_tracer, load_dictionary

__all__ = ["CrossLayerTranscoder", "load_cross_layer_transcoder"]


class CrossLayerTranscoder(nn.Module):
    """The layers of a CLT, layer N at index N, each a dictionary whose written places are the
    ``writes`` of its own and every later layer."""

    def __init__(self, layers: Sequence[Dictionary]) -> None:
        super().__init__()
        writes = [layer.config.writes for layer in layers]
        for n, layer in enumerate(layers):
            if layer.config.written_places() != writes[n:]:
                raise DictionaryError(
                    f"layer {n} of a cross-layer transcoder writes "
                    f"{layer.config.written_places()}, expected {writes[n:]}"
                )
            if (layer.d_in, layer.d_sae, layer.d_out) != (
                layers[0].d_in,
                layers[0].d_sae,
                layers[0].d_out,
            ):
                raise DictionaryError(f"layer {n} of a cross-layer transcoder has other widths")
        self.layers = nn.ModuleList(layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def members(self) -> dict[str, Dictionary]:
        """``{place: layer}``, each layer keyed by the first place it writes (``mlp.N``): the
        dictionary set that splices the CLT."""
        return {layer.config.writes: layer for layer in self.layers}

    def encode(self, x_LND: torch.Tensor) -> torch.Tensor:
        """``(L, ..., d_in) -> (L, ..., d_sae)``: layer N's features of its input ``x[N]``."""
        return torch.stack([layer.encode(x) for layer, x in zip(self.layers, x_LND, strict=True)])

    def decode(self, f_LNF: torch.Tensor) -> torch.Tensor:
        """``(L, ..., d_sae) -> (L, ..., d_out)``: every output layer's reconstruction, the
        sum over the layers at or before it (summed in float32)."""
        out = [0.0] * self.n_layers
        for n, (layer, f) in enumerate(zip(self.layers, f_LNF, strict=True)):
            for index in range(self.n_layers - n):
                out[n + index] = out[n + index] + layer.decode_at(f, index).float()
        return torch.stack(out).to(self.layers[0].dtype)

    def forward(self, x_LND: torch.Tensor) -> DictionaryOutput:
        f_LNF = self.encode(x_LND)
        return DictionaryOutput(self.decode(f_LNF), f_LNF)


def load_cross_layer_transcoder(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> CrossLayerTranscoder:
    """A circuit-tracer CLT folder (``W_enc_N.safetensors`` + ``W_dec_N.safetensors``) as one
    ``CrossLayerTranscoder``."""
    files = circuit_tracer.cross_layer_files(Path(path))
    if not files:
        raise DictionaryError(
            f"{path}: no W_enc_N.safetensors files (not a cross-layer transcoder)"
        )
    return CrossLayerTranscoder(
        [load_dictionary(file, device=device, dtype=dtype) for file in files]
    )
