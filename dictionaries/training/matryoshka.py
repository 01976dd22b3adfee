"""Matryoshka BatchTopK training (Bussmann et al. 2025, "Learning Multi-Level Features with
Matryoshka Sparse Autoencoders"; Nabeshima 2024, "Matryoshka Sparse Autoencoders").

The latents are ordered, and every prefix of widths ``m_1 < m_2 < ... < m_G = d_sae``
(``TrainConfig.matryoshka_widths``) is trained to reconstruct on its own:

1. Encode once with BatchTopK over all latents: the ``k * N`` largest pre-activations of the
   batch (``sparse_ops.batch_topk_encode``), which also updates the inference threshold.
2. For each prefix ``m``, reconstruct from the kept latents with index ``< m`` only:
   ``y_hat_m = sum over kept j < m of f_j W_dec[j] + b_dec``; the last prefix is the full code.
3. loss = mean over prefixes of ``||y - y_hat_m||^2`` + the AuxK term of ``TopKObjective`` on
   the full code's residual. The mean (dictionary_learning's default equal group weights) keeps
   the loss on the scale of a BatchTopK SAE's, so its learning rate and AuxK balance carry over;
   SAELens sums the prefixes instead, which multiplies the reconstruction term by ``G``.

Early latents must reconstruct without the later ones, so they learn general features and later
latents refine them, instead of a broad feature being absorbed into many specific ones. At
inference the dictionary is a plain BatchTopK SAE with its threshold (``arch`` batchtopk); the
widths are recorded in its training settings.

Cost: each prefix is one more ``sparse_decode`` of the ``N * k`` kept pairs (its masked pairs
have value 0), ``O(G N k D)`` against the encoder's dense ``O(N D F)``: at ``G`` 5, ``k`` 32,
``F`` 16384 about 1 % more.
"""

from __future__ import annotations

import torch

from sparse_circuits.dictionaries.training.objective import register_objective, squared_error
from sparse_circuits.dictionaries.training.topk import BatchTopKObjective


@register_objective("matryoshka_batchtopk")
class MatryoshkaBatchTopKObjective(BatchTopKObjective):
    def reconstruction_loss(
        self,
        values_NK: torch.Tensor,
        indices_NK: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        mse: torch.Tensor,
    ) -> torch.Tensor:
        """Mean over the prefixes of the squared error using only the prefix's latents."""
        *inner, _full = self.config.matryoshka_widths
        errors = [mse]  # the last prefix is every latent: the full code's error
        for width in inner:
            in_prefix_NK = indices_NK < width
            y_hat = self.decode_sparse(values_NK * in_prefix_NK, indices_NK, x)
            errors.append(squared_error(y, y_hat))
        return torch.stack(errors).mean()
