"""TopK and BatchTopK training (Gao et al. 2024; Bussmann et al. 2024).

loss = ||y - y_hat||^2 + auxk_alpha * Var(y) * ||e - e_hat||^2 / Var(e)

- ``y_hat`` uses only the k active latents of each token (BatchTopK: the k * N largest of the
  batch); encoding, decoding and their gradients run on the sparse code (``sparse_ops``), so a
  step costs little more than the dense encoder product.
- AuxK (Gao et al. appendix A.2): ``e = y - y_hat`` is the residual, ``e_hat`` its
  reconstruction from the ``auxk_k`` most active *dead* latents; it gives dead latents a
  gradient and so revives them. As in their reference code the term is a *normalised* MSE,
  ``||e - e_hat||^2 / Var(e)``; our main loss is not normalised, so the term is scaled by
  ``Var(y)`` to keep Gao et al.'s balance ``MSE / Var(y) + alpha * NMSE(e)``. (The residual is
  much smaller than ``y``, so a plain MSE would make AuxK ``1 / FVU`` times weaker.)
- The decoder stays unit-norm (``Objective``); ``b_dec`` starts at the geometric median.
- BatchTopK also learns its inference threshold: the running mean of the smallest activation
  kept in each batch (Bussmann et al. section 3).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from sparse_circuits.dictionaries.training.objective import (
    Objective,
    StepOutput,
    all_reduce_,
    register_objective,
    squared_error,
)
from sparse_circuits.dictionaries.training.sparse_ops import (
    batch_topk_encode,
    sparse_decode,
    topk_encode,
)

THRESHOLD_MOMENTUM = 0.99
"""Weight of the past in BatchTopK's running threshold estimate."""
AUXK_DENSE_FROM = 1 / 16
"""AuxK decodes its code as a dense ``(N, G)`` matrix when each token keeps at least this
fraction of the ``G`` dead latents, by the sparse kernels below it. Measured on 2 cores at
d_in 576, 16384 latents, k_aux 288, batch 4096, a step's milliseconds (sparse, dense): a tenth
dead (G 1638, 18 % kept) 432 and 341 in bfloat16, 882 and 894 in float32; 28 % dead (G 4600,
6 %) 489 and 498 in bfloat16."""


@register_objective("topk")
class TopKObjective(Objective):
    def encode_sparse(
        self, x: torch.Tensor, columns_G: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``(N, d_in) -> values (N, k), indices (N, k)``, and with ``columns_G`` those latents'
        pre-activations ``(N, G)`` as well (``sparse_ops.topk_encode``)."""
        d = self.dictionary
        b_dec = d.b_dec if d.config.center_input else None
        return topk_encode(
            x, d.W_enc, d.b_enc, b_dec, d.config.k,
            compute_dtype=self.compute_dtype, columns=columns_G,
        )  # fmt: skip

    def decode_sparse(
        self, values_NK: torch.Tensor, indices_NK: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """``(N, d_out)``: the reconstruction from the given codes (plus the skip term)."""
        d = self.dictionary
        y_hat = sparse_decode(values_NK, indices_NK, d.W_dec, d.b_dec)
        skip = d.skip_term(x)
        return y_hat if skip is None else y_hat + skip

    def reconstruction_loss(
        self,
        values_NK: torch.Tensor,
        indices_NK: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        mse: torch.Tensor,
    ) -> torch.Tensor:
        """The loss's reconstruction term (``()``); ``mse`` is the full code's error."""
        return mse

    def loss(self, x: torch.Tensor, y: torch.Tensor, step: int) -> StepOutput:
        d = self.dictionary
        dead_G = None
        if self.config.auxk_alpha > 0 and self.dead_mask.any():
            dead_G = self.dead_mask.nonzero().squeeze(-1).to(x.device)
            values_NK, indices_NK, dead_pre_NG = self.encode_sparse(x, dead_G)
        else:
            values_NK, indices_NK = self.encode_sparse(x)
        y_hat = self.decode_sparse(values_NK, indices_NK, x)
        mse = squared_error(y, y_hat)
        loss, auxk = self.reconstruction_loss(values_NK, indices_NK, x, y, mse), None
        if dead_G is not None:
            auxk = self.auxk_loss(dead_pre_NG, dead_G, (y - y_hat).detach())
            loss = loss + self.config.auxk_alpha * total_variance(y) * auxk
        active_NK = values_NK > 0
        fired_F = torch.zeros(d.d_sae, dtype=torch.bool, device=x.device)
        fired_F[indices_NK[active_NK]] = True
        l0 = active_NK.sum(-1).float().mean()
        return StepOutput(loss, mse.detach(), l0, fired_F, None if auxk is None else auxk.detach())

    def auxk_loss(
        self, dead_pre_NG: torch.Tensor, dead_G: torch.Tensor, residual_ND: torch.Tensor
    ) -> torch.Tensor:
        """Normalised MSE of the residual's reconstruction from each token's ``auxk_k`` most
        active dead latents (``()``), given the dead latents' pre-activations.

        Those come from the encoder's product over every latent (``encode_sparse``'s
        ``columns``): no second product over the dead latents' columns, and their gradient
        meets the main one inside the encoder's backward, with no ``(d_in, d_sae)`` zeros.
        The kept codes are decoded densely or sparsely by their density (``AUXK_DENSE_FROM``).
        Measured against a second sparse encode over the dead columns, at a tenth dead as
        above: 480 -> 341 ms a step in bfloat16, 974 -> 894 in float32.
        """
        d = self.dictionary
        k_aux = min(self.config.auxk_k or d.d_in // 2, len(dead_G))
        values_NK, which_NK = dead_pre_NG.topk(k_aux, dim=-1, sorted=False)
        values_NK = values_NK.clamp_min(0)
        if k_aux >= AUXK_DENSE_FROM * len(dead_G):  # a dense code: one product
            code_NG = torch.zeros_like(dead_pre_NG).scatter(1, which_NK, values_NK)
            W_dead_GD = d.W_dec[dead_G]
            with self.autocast():
                residual_hat = code_NG @ W_dead_GD
        else:
            residual_hat = sparse_decode(values_NK, dead_G[which_NK], d.W_dec, None)
        return squared_error(residual_ND, residual_hat) / total_variance(residual_ND)


def total_variance(x_ND: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the rows from their mean, ``(N, d) -> ()`` (never 0)."""
    return (x_ND - x_ND.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12).detach()


@register_objective("batchtopk")
class BatchTopKObjective(TopKObjective):
    def encode_sparse(
        self, x: torch.Tensor, columns_G: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        d = self.dictionary
        b_dec = d.b_dec if d.config.center_input else None
        codes = batch_topk_encode(
            x, d.W_enc, d.b_enc, b_dec, d.config.k,
            compute_dtype=self.compute_dtype, columns=columns_G,
        )  # fmt: skip
        values_NK = codes[0]
        with torch.no_grad():
            kept = values_NK[values_NK > 0]
            smallest = kept.min() if len(kept) else values_NK.new_tensor(float("inf"))
            # over the global batch when data-parallel, as its selection is
            smallest = all_reduce_(smallest.float(), dist.ReduceOp.MIN)
            if torch.isfinite(smallest):
                d.threshold.mul_(THRESHOLD_MOMENTUM).add_((1 - THRESHOLD_MOMENTUM) * smallest)
        return codes
