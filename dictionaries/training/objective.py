"""What every architecture's training objective shares: the loss interface, dead-latent
bookkeeping and the unit-norm decoder constraint.

An ``Objective`` owns one dictionary being trained. Per step the trainer calls
``loss(x, y, step)``, backpropagates, calls ``before_optimizer_step()`` (gradient surgery),
steps the optimiser, then ``after_optimizer_step()`` (projections). ``x`` is what the dictionary
reads and ``y`` what it reconstructs (``y is x`` for an SAE, another place for a transcoder),
both ``(N, d)`` and already normalised.

Mixed precision: the dictionary's parameters are float32 master weights; with
``compute_dtype`` bfloat16 the objective runs its large products in bfloat16 (``autocast``
for the dense architectures, the sparse ops' ``compute_dtype`` for TopK) and computes its
losses in float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import torch
import torch.distributed as dist

from sparse_circuits.dictionaries.base import Dictionary
from sparse_circuits.dictionaries.training.config import TrainConfig
from sparse_circuits.precision import ResolvedPrecision

__all__ = ["Objective", "StepOutput", "OBJECTIVES", "register_objective", "geometric_median"]


class StepOutput(NamedTuple):
    loss: torch.Tensor
    """Scalar to backpropagate."""
    mse: torch.Tensor
    """Mean over tokens of the summed squared reconstruction error (detached)."""
    l0: torch.Tensor
    """Mean active features per token (detached)."""
    fired: torch.Tensor
    """``(d_sae,)`` bool: which features fired on this batch."""
    auxk_nmse: torch.Tensor | None = None
    """TopK: the AuxK term's normalised MSE (detached), when some latents are dead; 1 is what
    predicting zero would give."""


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(arch: str):
    def decorate(cls):
        OBJECTIVES[arch] = cls
        return cls

    return decorate


def geometric_median(points_ND: torch.Tensor, *, iterations: int = 100, tol: float = 1e-5):
    """Weiszfeld's algorithm; Gao et al. (2024) initialise ``b_dec`` at this point."""
    median_D = points_ND.mean(0)
    for _ in range(iterations):
        distances_N = (points_ND - median_D).norm(dim=-1).clamp_min(1e-8)
        weights_N = 1 / distances_N
        updated_D = (weights_N[:, None] * points_ND).sum(0) / weights_N.sum()
        if (updated_D - median_D).norm() < tol * median_D.norm().clamp_min(1e-8):
            return updated_D
        median_D = updated_D
    return median_D


def all_reduce_(tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce when running data-parallel; a no-op in one process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=op)
    return tensor


PROJECTION_ROWS = 256
"""Decoder rows per block in the gradient's unit-norm projection."""


class Objective(ABC):
    unit_norm_decoder: bool = True
    """Keep decoder rows unit-norm: remove the gradient's component along each row before the
    step, renormalise after (Gao et al. 2024; Bricken et al. 2023)."""
    float32_only: ClassVar[str | None] = None
    """Why this objective trains in float32 whatever the precision setting, if it does."""

    def __init__(
        self,
        dictionary: Dictionary,
        config: TrainConfig,
        *,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.dictionary = dictionary
        self.config = config
        self.compute_dtype = compute_dtype
        """Dtype of the forward's large products; the parameters stay in their own."""
        self.tokens_since_fired = torch.zeros(dictionary.d_sae, dtype=torch.long)

    @classmethod
    def precision_for(cls, resolved: ResolvedPrecision) -> ResolvedPrecision:
        """``resolved``, or float32 with the reason when this objective needs it."""
        if cls.float32_only is None or not resolved.is_bfloat16:
            return resolved
        return ResolvedPrecision(resolved.asked, "float32", f"float32: {cls.float32_only}")

    def autocast(self) -> torch.autocast:
        """Context in which the products of float32 parameters run in ``compute_dtype``
        (``torch.autocast``; a no-op in float32). Losses are computed outside it."""
        return torch.autocast(
            self.dictionary.device.type,
            dtype=self.compute_dtype,
            enabled=self.compute_dtype != torch.float32,
        )

    # --- set-up -------------------------------------------------------------------------

    def initialize(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Data-dependent initialisation from a first sample: ``b_dec`` at the targets'
        geometric median, and the decoder rows unit-norm."""
        with torch.no_grad():
            self.dictionary.b_dec.copy_(geometric_median(y.float()).to(self.dictionary.dtype))
            self.normalize_decoder()

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.dictionary.parameters() if p.requires_grad]

    # --- one step -----------------------------------------------------------------------

    @abstractmethod
    def loss(self, x: torch.Tensor, y: torch.Tensor, step: int) -> StepOutput:
        """Forward pass and loss on a batch ``x (N, d_in)``, ``y (N, d_out)``."""

    def before_optimizer_step(self) -> None:
        if self.unit_norm_decoder and self.dictionary.W_dec.grad is not None:
            W_dec_FD = self.dictionary.W_dec
            # in place, by blocks of rows: the dot products' (rows, d_out) temporary stays in
            # cache and each row is read once for both passes
            with torch.no_grad():
                for start in range(0, len(W_dec_FD), PROJECTION_ROWS):
                    rows_RD = W_dec_FD[start : start + PROJECTION_ROWS]
                    grad_RD = W_dec_FD.grad[start : start + PROJECTION_ROWS]
                    parallel_R = torch.linalg.vecdot(grad_RD, rows_RD)
                    grad_RD.addcmul_(parallel_R[:, None], rows_RD, value=-1)

    def after_optimizer_step(self) -> None:
        if self.unit_norm_decoder:
            self.normalize_decoder()

    def normalize_decoder(self) -> None:
        with torch.no_grad():
            W_dec_FD = self.dictionary.W_dec
            W_dec_FD /= W_dec_FD.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def record_firing(self, fired_F: torch.Tensor, n_tokens: int) -> None:
        """Count tokens since each latent last fired, over all data-parallel ranks (reduced
        on the dictionary's device: NCCL communicates only CUDA tensors)."""
        device = self.dictionary.device
        fired = all_reduce_(fired_F.to(device, torch.int32), dist.ReduceOp.MAX).bool().cpu()
        total = all_reduce_(torch.tensor(n_tokens, device=device)).item()
        self.tokens_since_fired += total
        self.tokens_since_fired[fired] = 0

    @property
    def dead_mask(self) -> torch.Tensor:
        """``(d_sae,)`` bool: latents that have not fired within ``dead_after_tokens``."""
        return self.tokens_since_fired >= self.config.dead_window

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_since_fired": self.tokens_since_fired.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens_since_fired = state["tokens_since_fired"].clone()


def squared_error(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of the summed squared error, ``(N, d) -> ()``, in ``y``'s dtype (the
    float32 data under mixed precision)."""
    return (y - y_hat.to(y.dtype)).square().sum(-1).mean()
