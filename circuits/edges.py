"""Edge effects between circuit nodes, through direct paths only (Marks et al. 2024, section
2.2, "edge attribution"; every spliced place but the two ends held fixed).

The weight of the edge from upstream node ``u`` to downstream node ``d`` is

    w(u -> d) = sum over positions of  dm/dd * dd/du * (u_patch - u_clean),

averaged over examples, where ``dm/dd`` is the total gradient of the metric at ``d`` (from the
ordinary spliced run) and ``dd/du`` the Jacobian of ``d`` with respect to ``u`` along direct
paths (from a run spliced with ``hold_fixed``, so gradients stop at every spliced place). Edges
into the metric node use the direct gradient of the metric itself.

For every batch:

1. ordinary spliced clean run and backward: ``dm/df`` and ``dm/de`` at every place; the patch
   run gives the deltas;
2. ``hold_fixed`` clean run: at each place the features and error as functions of upstream
   leaves (``upstream_features``/``upstream_error``) and the metric's direct gradients;
3. per downstream place, compute the vector-Jacobian products of many downstream nodes at once
   with respect to every earlier place (the ones without a direct path come back empty)
   (``torch.autograd.grad(..., is_grads_batched=True)``), chunked to bound memory, contract
   them with the upstream deltas and keep the pairs whose both ends are selected nodes.

Edges are returned sparse, as ``{(upstream, downstream): weight}`` over selected nodes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from dictionaries import Dictionary

from .attribution import Aggregation
from .metrics import LogitDiff, Metric
from .prompts import PromptBatch
from .runner import PlaceValues, Runner

__all__ = ["NodeKey", "NodeSelection", "edge_effects", "METRIC_NODE"]

NodeKey = tuple[str, int, int]
"""``(place, feature, position)``: feature ``-1`` is the error node, position ``-1`` means
summed over positions; ``METRIC_NODE`` is the metric."""
METRIC_NODE: NodeKey = ("metric", -1, -1)
DIRECT_PLACES = 4
"""Most places with a direct path into one place (resid.L: resid.L-1, attn.L, mlp.L, and a
transcoder's input), for sizing the chunks of batched vector-Jacobian products."""


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


def _contract(
    grad_f: torch.Tensor, grad_e: torch.Tensor, v: PlaceValues, aggregation: Aggregation
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(n, B, T, F)``/``(n, B, T, D)`` times deltas, summed over examples:
    features ``(n, F)`` or ``(n, T, F)``, error ``(n,)`` or ``(n, T)``."""
    f = (grad_f * v.delta_features).sum(1)
    e = (grad_e * v.delta_error).sum(-1).sum(1)
    if aggregation == "sum":
        return f.sum(1), e.sum(1)
    return f, e


def _add_edges(
    edges: dict,
    downstream: list[NodeKey],
    place: str,
    f_nTF: torch.Tensor,
    e_nT: torch.Tensor,
    selection: NodeSelection,
) -> None:
    """Accumulate the contributions of ``place``'s selected nodes into ``edges``."""
    upstream = selection.keys(place)
    if not upstream:
        return
    for _, feature, position in upstream:
        if feature >= 0:
            column = f_nTF[:, feature] if position < 0 else f_nTF[:, position, feature]
        else:
            column = e_nT if position < 0 else e_nT[:, position]
        for down, weight in zip(downstream, column.tolist(), strict=True):
            key = ((place, feature, position), down)
            edges[key] = edges.get(key, 0.0) + weight


def _downstream_vectors(
    nodes: list[NodeKey], grad_f: torch.Tensor, grad_e: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot-masked metric gradients: ``(n, B, T, F)`` and ``(n, B, T, D)`` for ``n``
    downstream nodes, each selecting its own feature (or the error) and position(s)."""
    go_f = grad_f.new_zeros(len(nodes), *grad_f.shape)
    go_e = grad_e.new_zeros(len(nodes), *grad_e.shape)
    for j, (_, feature, position) in enumerate(nodes):
        at = slice(None) if position < 0 else slice(position, position + 1)
        if feature >= 0:
            go_f[j, :, at, feature] = grad_f[:, at, feature]
        else:
            go_e[j, :, at] = grad_e[:, at]
    return go_f, go_e


def edge_effects(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    batches: list[PromptBatch],
    selection: NodeSelection,
    *,
    metric: Metric | None = None,
    aggregation: Aggregation = "sum",
    batch_size: int = 16,
    batched: bool = True,
    chunk_elements: int = 2**26,
    progress: bool = True,
) -> dict[tuple[NodeKey, NodeKey], float]:
    """Weights of the edges between selected nodes (and into the metric), averaged over
    examples. ``batched=False`` runs one backward per downstream node (the slow twin)."""
    runner = Runner(model, adapter, dictionaries, metric or LogitDiff())
    edges: dict[tuple[NodeKey, NodeKey], float] = {}
    n_examples = 0
    chunks = [piece for batch in batches for piece in batch.split(batch_size)]
    for batch in tqdm(chunks, desc="edges", disable=not progress):
        clean, _, values = runner.clean_and_patch(batch, grad=True)
        leaves = [t for sp in clean.places.values() for t in (sp.features, sp.error)]
        total = torch.autograd.grad(clean.metric.sum(), leaves)
        total_f = {p: total[2 * i] for i, p in enumerate(clean.places)}
        total_e = {p: total[2 * i + 1] for i, p in enumerate(clean.places)}
        held_run = runner.run(batch.clean_ids, batch, grad=True, hold_fixed=True)
        held = held_run.places
        n_examples += len(batch)
        _metric_edges(held_run.metric, held, values, selection, aggregation, edges)
        for d_index, down_place in enumerate(runner.places):
            downstream = selection.keys(down_place)
            if not downstream:
                continue
            before = runner.places[:d_index]
            if not before:
                continue
            out_f, out_e = held[down_place].upstream_features, held[down_place].upstream_error
            # every earlier place is an input: autograd returns None, at no cost, for the ones
            # with no direct path (hold_fixed cut them), so no probing pass is needed
            inputs = [t for p in before for t in (held[p].features, held[p].error)]
            widest = max(held[p].features.numel() + held[p].error.numel() for p in before)
            per_node = DIRECT_PLACES * widest + out_f.numel() + out_e.numel()
            size = max(1, chunk_elements // per_node) if batched else 1
            for start in range(0, len(downstream), size):
                nodes = downstream[start : start + size]
                go_f, go_e = _downstream_vectors(nodes, total_f[down_place], total_e[down_place])
                if batched:
                    grads = torch.autograd.grad(
                        [out_f, out_e], inputs, grad_outputs=[go_f, go_e],
                        retain_graph=True, allow_unused=True, is_grads_batched=True,
                    )  # fmt: skip
                else:
                    grads = [
                        g[None] if g is not None else None
                        for g in torch.autograd.grad(
                            [out_f, out_e],
                            inputs,
                            grad_outputs=[go_f[0], go_e[0]],
                            retain_graph=True,
                            allow_unused=True,
                        )  # fmt: skip
                    ]
                for i, up_place in enumerate(before):
                    g_f, g_e = grads[2 * i], grads[2 * i + 1]
                    if g_f is None and g_e is None:
                        continue  # no direct path from this place
                    v = values[up_place]
                    g_f = torch.zeros(len(nodes), *v.delta_features.shape) if g_f is None else g_f
                    g_e = torch.zeros(len(nodes), *v.delta_error.shape) if g_e is None else g_e
                    f_w, e_w = _contract(g_f, g_e, v, aggregation)
                    _add_edges(edges, nodes, up_place, f_w.cpu(), e_w.cpu(), selection)
    return {key: weight / n_examples for key, weight in edges.items() if weight != 0.0}


def _metric_edges(metric_B, held, values, selection, aggregation, edges) -> None:
    """Edges from selected nodes straight into the metric: the held run's gradients reach
    only the places with a direct path to the output."""
    places = list(held)
    leaves = [t for p in places for t in (held[p].features, held[p].error)]
    grads = torch.autograd.grad(metric_B.sum(), leaves, retain_graph=True, allow_unused=True)
    for i, place in enumerate(places):
        v = values[place]
        g_f = grads[2 * i] if grads[2 * i] is not None else torch.zeros_like(v.delta_features)
        g_e = grads[2 * i + 1] if grads[2 * i + 1] is not None else torch.zeros_like(v.delta_error)
        f_w, e_w = _contract(g_f[None], g_e[None], v, aggregation)
        _add_edges(edges, [METRIC_NODE], place, f_w.cpu(), e_w.cpu(), selection)
