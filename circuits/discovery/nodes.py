"""The nodes of a circuit, shared by attribution, edges, graphs and faithfulness.

A node is a dictionary feature or a place's error term, summed over positions (aggregation
``sum``) or at one position (``none``):

- ``NodeKey``: ``(place, feature, position)``; feature ``-1`` is the error node, position ``-1``
  means summed over positions; ``METRIC_NODE`` is the metric.
- ``node_id``: the key as the text id used in graphs and files (``resid.3/12``,
  ``resid.3/err@4``, ``metric``).
- ``NodeEffects``: every node's effect on the metric, as tensors per place.
- ``NodeSelection``: which nodes a circuit keeps, as masks shaped like the effects;
  ``select_nodes`` makes one by threshold or top k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = [
    "METRIC_NODE",
    "Aggregation",
    "NodeEffects",
    "NodeKey",
    "NodeSelection",
    "node_id",
    "select_nodes",
]

Aggregation = Literal["sum", "none"]
NodeKey = tuple[str, int, int]
"""``(place, feature, position)``: feature ``-1`` is the error node, position ``-1`` means
summed over positions; ``METRIC_NODE`` is the metric."""

METRIC_NODE: NodeKey = ("metric", -1, -1)


@dataclass
class NodeEffects:
    """Mean effects over examples. With ``sum``: features ``(d_sae,)`` and error ``()`` per
    place; with ``none``: ``(T, d_sae)`` and ``(T,)``."""

    features: dict[str, torch.Tensor]
    errors: dict[str, torch.Tensor]
    aggregation: Aggregation
    method: str
    """How the effects were computed (attrib, ig, exact)."""
    n_examples: int
    metric_clean: float
    """Mean metric on the clean prompts."""
    metric_patch: float
    """Mean metric on the patch prompts (the clean value's baseline)."""
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    """Mean clean feature activation, same shape as ``features``."""

    def total(self, place: str) -> float:
        """Sum of a place's feature and error effects."""
        return float(self.features[place].sum() + self.errors[place].sum())


@dataclass
class NodeSelection:
    """Selected nodes per place, as masks shaped like the node effects: features ``(F,)`` and
    error ``()`` with aggregation ``sum``; ``(T, F)`` and ``(T,)`` with ``none``."""

    features: dict[str, torch.Tensor]
    errors: dict[str, torch.Tensor]

    def keys(self, place: str) -> list[NodeKey]:
        """Selected nodes of a place, features first."""
        f_mask, e_mask = self.features[place], self.errors[place]
        if f_mask.dim() == 1:
            keys = [(place, int(i), -1) for i in f_mask.nonzero().squeeze(-1)]
            return keys + ([(place, -1, -1)] if bool(e_mask) else [])
        keys = [(place, int(f), int(t)) for t, f in f_mask.nonzero().tolist()]
        return keys + [(place, -1, int(t)) for t in e_mask.nonzero().squeeze(-1)]

    def count(self) -> int:
        return sum(int(m.sum()) for m in self.features.values()) + sum(
            int(m.sum()) for m in self.errors.values()
        )


def node_id(key: NodeKey) -> str:
    place, feature, position = key
    if key == METRIC_NODE:
        return "metric"
    name = f"{place}/{'err' if feature < 0 else feature}"
    return name if position < 0 else f"{name}@{position}"


def select_nodes(
    effects: NodeEffects,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
) -> NodeSelection:
    """Nodes whose |effect| reaches ``threshold``, or the ``top_k`` largest |effects| overall
    (features and errors together)."""
    if (threshold is None) == (top_k is None):
        raise ValueError("select nodes by exactly one of threshold or top_k")
    if top_k is not None:
        everything = torch.cat(
            [t.abs().flatten() for t in (*effects.features.values(), *effects.errors.values())]
        )
        k = min(top_k, everything.numel())
        threshold = float(everything.topk(k).values[-1]) if k > 0 else float("inf")
        threshold = max(threshold, 1e-12)  # never select nodes of zero effect
    return NodeSelection(
        features={p: t.abs() >= threshold for p, t in effects.features.items()},
        errors={p: t.abs() >= threshold for p, t in effects.errors.items()},
    )
