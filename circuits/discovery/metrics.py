"""Metrics: a scalar of the model's output per example, ``(B,)``, that attribution explains.
Whatever the model's dtype, a metric is float32 (``Runner`` casts it; the metrics here compute
in float32: the logits are float32, see ``circuits.model.loading.to_precision``).

A metric is called inside the trace, after splicing, as ``metric(model, adapter, batch)``, so it
may read the logits (``model.output.logits``) or any place (a probe on ``resid.L``). Any
callable of that form works; ``last_position_only`` lets the forward skip the unembedding of
every other position. A metric's ``repr`` is its name in a circuit's settings; ``METRICS``
rebuilds those that need nothing but their name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.model.adapters import ModelAdapter

__all__ = ["METRICS", "Metric", "LogitDiff", "ProbeLogit", "AnswerLogProb"]


class Metric(Protocol):
    def __call__(self, model: Any, adapter: ModelAdapter, batch: PromptBatch) -> torch.Tensor:
        """``(B,)`` metric values, computed inside the trace."""


class LogitDiff:
    """``logit(clean answer) - logit(patch answer)`` at the last position (Marks et al. 2024);
    the clean answer's logit alone when the prompt set has no patch answers."""

    name = "logit_diff"
    last_position_only = True

    def __call__(self, model: Any, adapter: ModelAdapter, batch: PromptBatch) -> torch.Tensor:
        logits_BV = model.output.logits[:, -1]
        rows = torch.arange(len(batch), device=logits_BV.device)
        value = logits_BV[rows, batch.clean_answer]
        if batch.patch_answer is not None:
            value = value - logits_BV[rows, batch.patch_answer]
        return value

    def __repr__(self) -> str:
        return self.name


class AnswerLogProb:
    """``log p(clean answer)`` at the last position: how well the model predicts each
    prompt's own next token. The metric of the unsupervised pipeline's circuits (Marks et al.
    2024, section 5), there with a zero baseline (prompts without patch fields)."""

    name = "answer_log_prob"
    last_position_only = True

    def __call__(self, model: Any, adapter: ModelAdapter, batch: PromptBatch) -> torch.Tensor:
        log_probs_BV = model.output.logits[:, -1].float().log_softmax(dim=-1)
        rows = torch.arange(len(batch), device=log_probs_BV.device)
        return log_probs_BV[rows, batch.clean_answer]

    def __repr__(self) -> str:
        return self.name


class ProbeLogit:
    """A linear probe's logit on the mean over positions (from ``start``) of one place's
    activation."""

    last_position_only = True

    def __init__(
        self,
        place: str,
        weight_D: torch.Tensor,
        bias: float | torch.Tensor = 0.0,
        *,
        start: int = 0,
    ):
        self.place, self.weight_D, self.bias, self.start = place, weight_D, bias, start

    def __call__(self, model: Any, adapter: ModelAdapter, batch: PromptBatch) -> torch.Tensor:
        pooled_BD = adapter.read(self.place)[:, self.start :].float().mean(dim=1)
        return pooled_BD @ self.weight_D.to(pooled_BD) + self.bias

    def __repr__(self) -> str:
        return f"probe@{self.place}"


METRICS: dict[str, Callable[[], Metric]] = {
    LogitDiff.name: LogitDiff,
    AnswerLogProb.name: AnswerLogProb,
}
"""Metric name (its ``repr``) -> class, for the metrics a circuit file's name rebuilds (those
without parameters; a probe's needs its weights)."""
