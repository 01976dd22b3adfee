"""TopK (Gao et al., 2024) and BatchTopK (Bussmann et al., 2024) sparse autoencoders.

TopK keeps the ``k`` largest pre-activations of each token (after a ReLU; with
``config.signed``, as they are). BatchTopK keeps the
``k * n_tokens`` largest over a whole training batch, so a token may use more or fewer than ``k``
features; at inference it uses a single threshold instead, estimated during training, which
makes each token's code independent of the rest of the batch.
"""

import torch
from torch import nn

from sparse_circuits.dictionaries.base import Dictionary, DictionaryConfig, register_architecture


def topk_mask(pre: torch.Tensor, k: int, *, signed: bool = False) -> torch.Tensor:
    """``(..., d_sae)``: keep the ``k`` largest entries of the last axis (after ReLU, unless
    ``signed``)."""
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, indices, values if signed else torch.relu(values))


@register_architecture("topk")
class TopKSAE(Dictionary):
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return topk_mask(pre, self.config.k, signed=self.config.signed)


@register_architecture("batchtopk")
class BatchTopKSAE(Dictionary):
    def __init__(self, config: DictionaryConfig) -> None:
        super().__init__(config)
        self.threshold = nn.Parameter(torch.tensor(0.0), requires_grad=False)
        """Inference threshold: the running mean of the smallest kept activation in training."""

    def batch_activation(self, pre: torch.Tensor) -> torch.Tensor:
        """``(N, d_sae)``: keep the ``k * N`` largest entries of the whole batch (training)."""
        flat = pre.flatten()
        n_keep = min(self.config.k * pre[..., 0].numel(), flat.numel())
        return topk_mask(flat, n_keep).view_as(pre)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.batch_activation(pre)
        return pre * (pre > self.threshold).to(pre.dtype) * (pre > 0).to(pre.dtype)
