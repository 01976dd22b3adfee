"""JumpReLU SAE (Rajamanoharan et al., 2024, "Jumping Ahead"; the Gemma Scope architecture).

``f = pre * 1[pre > threshold]`` with a learned per-feature threshold; the trainer learns it with
a straight-through estimator.
"""

import torch
from torch import nn

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, register_architecture


@register_architecture("jumprelu")
class JumpReluSAE(Dictionary):
    def __init__(self, config: DictionaryConfig) -> None:
        super().__init__(config)
        self.threshold = nn.Parameter(torch.zeros(config.d_sae))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre * (pre > self.threshold).to(pre.dtype) * (pre > 0).to(pre.dtype)
