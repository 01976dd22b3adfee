"""Where training activations come from: anything with ``next_batch`` and a resumable state.

A source hands each data-parallel rank its own rows: at every step the global batch is
``batch_size`` rows and rank ``r`` of ``world`` gets the ``r``-th slice, so ``world`` processes
together see exactly the rows one process would.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["ActivationSource", "TensorSource"]


@runtime_checkable
class ActivationSource(Protocol):
    d_in: int
    d_out: int

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the next global batch of ``batch_size`` rows:
        ``x (n, d_in)`` and the reconstruction target ``y (n, d_out)`` (``y is x`` for SAEs)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TensorSource:
    """Activations held in memory, reshuffled every epoch with a seeded generator."""

    def __init__(
        self,
        x_ND: torch.Tensor,
        y_ND: torch.Tensor | None = None,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if y_ND is not None and len(y_ND) != len(x_ND):
            raise ValueError(f"x has {len(x_ND)} rows but y has {len(y_ND)}")
        self.x, self.y = x_ND, y_ND
        self.d_in = x_ND.shape[-1]
        self.d_out = self.d_in if y_ND is None else y_ND.shape[-1]
        self.rank, self.world = rank, world
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(x_ND), generator=self.generator)
        self.position = 0

    def _take(self, n: int) -> torch.Tensor:
        """The next ``n`` row indices, starting a new shuffled epoch when one runs out."""
        parts = []
        while n > 0:
            if self.position == len(self.order):
                self.order = torch.randperm(len(self.x), generator=self.generator)
                self.position = 0
            part = self.order[self.position : self.position + n]
            self.position += len(part)
            n -= len(part)
            parts.append(part)
        return torch.cat(parts)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._take(batch_size).chunk(self.world)[self.rank]
        x = self.x[rows]
        return x, (x if self.y is None else self.y[rows])

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order.clone(),
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = state["position"]
