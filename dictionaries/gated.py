"""Gated SAE (Rajamanoharan et al., 2024, "Improving Dictionary Learning with Gated SAEs").

The gate decides which features fire, the magnitude path how much, with the magnitude weights
tied to the gate weights by a per-feature exponential rescaling (section 3.1):

    pi_gate = (x - b_dec) @ W_enc + b_enc               # b_enc is the paper's b_gate
    pi_mag  = (x - b_dec) @ (W_enc * exp(r_mag)) + b_mag
    f       = 1[pi_gate > 0] * relu(pi_mag)

Because the rescaling acts per column, ``pi_mag = (pi_gate - b_enc) * exp(r_mag) + b_mag``,
so the whole encoder runs from one matrix product.
"""

import torch
from torch import nn

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, register_architecture


@register_architecture("gated")
class GatedSAE(Dictionary):
    def __init__(self, config: DictionaryConfig) -> None:
        super().__init__(config)
        self.r_mag = nn.Parameter(torch.zeros(config.d_sae))
        self.b_mag = nn.Parameter(torch.zeros(config.d_sae))

    def magnitude(self, pi_gate: torch.Tensor) -> torch.Tensor:
        """``(..., d_sae)`` gate pre-activation -> magnitude pre-activation ``pi_mag``."""
        return (pi_gate - self.b_enc) * torch.exp(self.r_mag) + self.b_mag

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return (pre > 0).to(pre.dtype) * torch.relu(self.magnitude(pre))
