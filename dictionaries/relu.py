"""ReLU + L1 sparse autoencoder (Bricken et al., 2023; the dictionary_learning ``AutoEncoder``)."""

import torch

from sparse_circuits.dictionaries.base import Dictionary, register_architecture


@register_architecture("relu")
class ReluSAE(Dictionary):
    """``f = relu(pre)``; sparsity comes from the L1 penalty the trainer adds."""

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)
