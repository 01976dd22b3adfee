"""ReLU + L1 training (Bricken et al. 2023; Anthropic's April 2024 update).

loss = ||y - y_hat||^2 + lambda(t) * sum_i f_i * ||W_dec_i||

With ``decoder_norm="unit"`` the decoder rows stay unit-norm and the weight is 1; with
``"weighted_l1"`` they are free and each feature's L1 term is scaled by its decoder norm, so the
penalty cannot be dodged by shrinking f and growing W_dec. ``lambda`` ramps up linearly over the
first ``sparsity_warmup`` of training.
"""

from __future__ import annotations

import torch

from sparse_circuits.dictionaries.training.objective import (
    Objective,
    StepOutput,
    register_objective,
    squared_error,
)


@register_objective("relu")
class ReluObjective(Objective):
    def __init__(self, dictionary, config, **options) -> None:
        super().__init__(dictionary, config, **options)
        self.unit_norm_decoder = config.decoder_norm == "unit"

    def loss(self, x: torch.Tensor, y: torch.Tensor, step: int) -> StepOutput:
        dictionary = self.dictionary
        with self.autocast():
            f_NF = dictionary.encode(x)
            y_hat = dictionary.reconstruct(f_NF, x)
        mse = squared_error(y, y_hat)
        decoder_norm_F = dictionary.W_dec.norm(dim=-1)
        l1 = (f_NF.float() * decoder_norm_F).sum(-1).mean()
        loss = mse + self.config.sparsity_coefficient * self.config.sparsity_scale(step) * l1
        active = f_NF > 0
        return StepOutput(loss, mse.detach(), active.sum(-1).float().mean(), active.any(0))
