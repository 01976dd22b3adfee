"""Ablation: what an ablated value (a feature, an error, an activation) is replaced with.

One definition of each mode, used by circuit faithfulness (``circuits.discovery.faithfulness``,
Marks et al. 2024, section 3.2) and by feature editing (``editing.interventions``):

- ``zero``: 0.
- ``mean``: the mean of the same entry over reference prompts. Over an evaluation set
  (faithfulness) it is taken per position, with every prompt of the set aligned at its last
  token, the one the metric reads (as ``PromptBatch`` aligns a patch prefix with its clean
  prefix; left-padding prompts to one length and averaging over the batch aligns them the same
  way): position ``t`` of a prompt of ``T`` tokens takes the mean over every prompt of the set
  that has a token ``T - 1 - t`` places before its last, i.e. every prompt of at least
  ``T - t`` tokens (``PositionMean``). With one prompt length this is the plain per-position
  mean over all prompts, whichever batches they come in; a prompt of a length no other prompt
  has is still ablated, with the means of the other prompts at its positions. Only positions
  that no other prompt has (the first tokens of the single longest prompt) keep their value.
  Feature editing takes given means ``(n,)``, one per feature for every position, since the
  prompts it edits (generation included) have no fixed length.
- ``resample``: the value the same entry takes in another prompt. Over an evaluation set, the
  prompts of each length take their values from one another by a uniformly random derangement
  drawn with a seed (``derangement``: no prompt keeps its own values), every place, feature and
  error of a prompt from the same partner prompt. Unlike a mean, a partner must have every
  position, so only prompts of the same length are paired. Feature editing draws each token's
  values from a given pool ``(M, n)`` of other inputs' activations, uniformly with replacement:
  the edited inputs are not in the pool, so none keeps its own values by construction.

``ablation_values(mode, values, reference=..., rows=...)`` computes the replacement in every
case: zeros, the ``reference`` mean broadcast to ``values``, or rows ``reference[rows]`` of a
pool.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

__all__ = [
    "Ablation",
    "ABLATIONS",
    "PositionMean",
    "ablation_values",
    "check_ablation",
    "derangement",
]

Ablation = Literal["zero", "mean", "resample"]
ABLATIONS: tuple[str, ...] = get_args(Ablation)


def check_ablation(mode: str, *, name: str = "ablation") -> Ablation:
    """``mode`` if it is one of ``ABLATIONS``; otherwise a ``ValueError`` naming ``name``."""
    if mode not in ABLATIONS:
        raise ValueError(f"{name} must be one of {', '.join(ABLATIONS)}, got {mode!r}")
    return mode


def derangement(n: int, *, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of ``range(n)`` with no fixed point, ``(n,)``.

    Rejection sampling: draw permutations until one moves every element. About ``1/e`` of
    all permutations are derangements, so it takes ``e`` (about 2.7) draws on average, and
    every derangement is equally likely (Sattolo's algorithm would give only the n-cycles)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    identity = torch.arange(n)
    while True:
        order = torch.randperm(n, generator=generator)
        if not (order == identity).any():
            return order


class PositionMean:
    """Per-position mean over prompts of different lengths, aligned at their last token.

    ``add`` batches ``(B, T, ...)`` of any ``T``; ``for_length(T)`` is ``(T, ...)``: at position
    ``t`` the mean over every prompt added with at least ``T - t`` tokens. Sums are kept in
    float32 at least, by offset from the last token (offset 0 is the last token)."""

    def __init__(self) -> None:
        self.sum_K: torch.Tensor | None = None
        """``(K, ...)``: sum over the prompts of the entry ``k`` tokens before the last."""
        self.count_K: torch.Tensor | None = None
        """``(K,)``: how many prompts have a token at offset ``k``."""

    def add(self, values_BT: torch.Tensor) -> None:
        """Add a batch ``(B, T, ...)`` of prompts of ``T`` tokens."""
        B, T = values_BT.shape[:2]
        dtype = torch.promote_types(values_BT.dtype, torch.float32)
        by_offset_T = values_BT.to(dtype).sum(0).flip(0)
        if self.sum_K is None:
            self.sum_K = torch.zeros_like(by_offset_T[:0])
            self.count_K = torch.zeros(0, dtype=torch.long, device=values_BT.device)
        if T > len(self.sum_K):
            grow = T - len(self.sum_K)
            self.sum_K = torch.cat(
                [self.sum_K, by_offset_T.new_zeros(grow, *by_offset_T.shape[1:])]
            )
            self.count_K = torch.cat([self.count_K, self.count_K.new_zeros(grow)])
        self.sum_K[:T] += by_offset_T
        self.count_K[:T] += B

    def for_length(self, T: int) -> torch.Tensor:
        """``(T, ...)``: the mean at each position of a prompt of ``T`` tokens."""
        if self.sum_K is None or T > len(self.sum_K):
            longest = 0 if self.sum_K is None else len(self.sum_K)
            raise ValueError(f"no prompt of {T} tokens was added (the longest has {longest})")
        count = self.count_K[:T].reshape(T, *[1] * (self.sum_K.dim() - 1))
        return (self.sum_K[:T] / count).flip(0)


def ablation_values(
    mode: Ablation,
    values: torch.Tensor,
    *,
    reference: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """What replaces ``values`` when they are ablated: same shape, dtype and device.

    - ``zero``: zeros;
    - ``mean``: ``reference``, the mean, broadcast to ``values`` (e.g. ``(T, F)`` per position
      against ``(B, T, F)``, or ``(n,)`` per feature against ``(B, T, n)``);
    - ``resample``: ``reference[rows]``, rows of a pool: ``reference (N, T, F)`` with a
      partner per prompt ``rows (B,)``, or ``reference (M, n)`` with a row per token
      ``rows (B, T)``; either way ``reference[rows]`` has the shape of ``values``."""
    mode = check_ablation(mode)
    if mode == "zero":
        return torch.zeros_like(values)
    if reference is None:
        raise ValueError(f"{mode} ablation needs the reference values to ablate to")
    if mode == "mean":
        replaced = reference
    elif rows is None:
        raise ValueError("resample ablation needs the rows of the pool to draw from")
    else:
        replaced = reference[rows.to(reference.device)]
    try:
        fits = torch.broadcast_shapes(replaced.shape, values.shape) == values.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{mode} ablation: the reference gives shape {tuple(replaced.shape)}, which does "
            f"not fit the values of shape {tuple(values.shape)}"
        )
    return replaced.to(values).expand_as(values)
