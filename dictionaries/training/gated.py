"""Gated SAE training (Rajamanoharan et al. 2024, section 3.2).

loss = ||y - y_hat||^2                                  reconstruction through the gated code
     + lambda(t) * ||relu(pi_gate) * ||W_dec|| ||_1     sparsity, on the gate path only
     + ||y - (relu(pi_gate) @ W_dec' + b_dec')||^2      auxiliary: the gate path alone must
                                                        reconstruct, through a frozen copy
                                                        (') of the decoder

The L1 term acts only on the gate, so the magnitudes of active features are not shrunk.
"""

from __future__ import annotations

import torch

from sparse_circuits.dictionaries.training.objective import (
    Objective,
    StepOutput,
    register_objective,
    squared_error,
)


@register_objective("gated")
class GatedObjective(Objective):
    def loss(self, x: torch.Tensor, y: torch.Tensor, step: int) -> StepOutput:
        dictionary = self.dictionary
        with self.autocast():
            pi_gate_NF = dictionary.pre_activation(x)
            f_NF = dictionary.activation(pi_gate_NF)
            y_hat = dictionary.reconstruct(f_NF, x)
            gate_NF = torch.relu(pi_gate_NF)
            y_gate = gate_NF @ dictionary.W_dec.detach() + dictionary.b_dec.detach()
        mse = squared_error(y, y_hat)
        sparsity = (gate_NF.float() * dictionary.W_dec.norm(dim=-1)).sum(-1).mean()
        aux = squared_error(y, y_gate)
        lam = self.config.sparsity_coefficient * self.config.sparsity_scale(step)
        active = f_NF > 0
        return StepOutput(
            mse + lam * sparsity + aux, mse.detach(), active.sum(-1).float().mean(), active.any(0)
        )
