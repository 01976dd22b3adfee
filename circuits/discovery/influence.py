"""Influence through a circuit graph: circuit-tracer's pruning and graph scores
(Ameisen et al. 2025, "Circuit Tracing", the appendix on pruning and graph evaluation; the
reference code is circuit-tracer's ``graph.py``), on the graph of ``circuits.discovery.graph``.

1. The adjacency ``A[target, source]`` holds the edge weights; ``|A|`` is normalised so that
   each target's incoming weights sum to 1 (``normalised_adjacency``): row ``d`` says which
   share of node ``d``'s input comes from each source.
2. A node's influence is the metric's weight (1, it is the one target) carried back along every
   path: ``w @ (Â + Â² + ...)`` with ``w`` one-hot at the metric (``node_influence``). The
   graph is acyclic (edges point downstream), so the series ends after at most one term per
   node.
3. Cumulative influence ranks nodes by influence, strongest first, and gives each the running
   share of the total (``cumulative_influence``): the strongest node is smallest, the weakest
   1.0; the metric has none.
4. Pruning (``prune_by_influence``) keeps the nodes that make up ``node_share`` of the total
   influence, then on that graph scores each edge by its target's influence (plus the metric's
   weight) times its share of the target's input and keeps the edges that make up
   ``edge_share`` of the total score; then, until nothing changes, it drops every node without
   an outgoing kept edge and every feature node without an incoming one (input nodes and error
   nodes, which no edge explains, are exempt from the second rule), as circuit-tracer does.
5. Scores (``graph_scores``), with error nodes as sources, as in circuit-tracer (there an
   error node has no incoming edge; here the edges into one are set aside for the scores): the
   replacement score is the influence of the input nodes over that of input and error nodes
   together; the completeness score is the influence-weighted (plus the metric's weight) mean
   over nodes of the share of a node's input that does not come from error nodes. Influence
   that ends at a feature node without incoming edges outside the input place counts for
   neither side.

Input nodes play the part of circuit-tracer's token embeddings: our graphs have no token nodes,
so the feature nodes of the circuit's earliest place (``embed`` when it has a dictionary) are
where its explanation starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from sparse_circuits.circuits.discovery.graph import is_metric
from sparse_circuits.circuits.model.places import forward_order

__all__ = [
    "GraphScores",
    "input_nodes",
    "normalised_adjacency",
    "node_influence",
    "cumulative_influence",
    "prune_by_influence",
    "graph_scores",
]


def _metric_node(graph: nx.DiGraph) -> str | None:
    return next((n for n, d in graph.nodes(data=True) if is_metric(d)), None)


def input_nodes(graph: nx.DiGraph) -> set[str]:
    """The feature nodes of the circuit's earliest place (the stand-in for embeddings)."""
    places = {str(d["place"]) for _, d in graph.nodes(data=True) if not is_metric(d)}
    if not places:
        return set()
    n_layers = 1 + max(int(layer) for _, layer in graph.nodes(data="layer", default=-1))
    first = forward_order(places, n_layers)[0]
    return {
        n
        for n, d in graph.nodes(data=True)
        if d.get("place") == first and not d.get("is_error") and not is_metric(d)
    }


def normalised_adjacency(graph: nx.DiGraph, nodes: list[str]) -> np.ndarray:
    """``(N, N)``: ``|weight|`` of the edge source -> target at ``[target, source]``, each row
    divided by its sum (rows of nodes without incoming edges stay 0). NaN weights count 0."""
    index = {n: i for i, n in enumerate(nodes)}
    A_NN = np.zeros((len(nodes), len(nodes)))
    for u, v, weight in graph.edges(data="weight"):
        if u in index and v in index:
            A_NN[index[v], index[u]] = abs(np.nan_to_num(float(weight)))
    return A_NN / np.maximum(A_NN.sum(axis=1, keepdims=True), 1e-10)


def _influence(A_NN: np.ndarray, target_N: np.ndarray) -> np.ndarray:
    """``target @ (A + A² + ...)``, ``(N,)``; ``A`` nilpotent (an acyclic graph)."""
    term_N = target_N @ A_NN
    total_N = term_N.copy()
    for _ in range(len(A_NN)):
        if not term_N.any():
            return total_N
        term_N = term_N @ A_NN
        total_N += term_N
    raise ValueError("the circuit graph has a cycle: influence needs edges pointing downstream")


def _target(graph: nx.DiGraph, nodes: list[str]) -> np.ndarray:
    """``(N,)``: 1 at the metric node, else 0 (the metric is the one target, probability 1)."""
    metric = _metric_node(graph)
    return np.array([1.0 if n == metric else 0.0 for n in nodes])


def node_influence(graph: nx.DiGraph) -> dict[str, float]:
    """Each node's influence on the metric through the graph (step 2); the metric's is 0."""
    nodes = list(graph.nodes)
    influence_N = _influence(normalised_adjacency(graph, nodes), _target(graph, nodes))
    return dict(zip(nodes, influence_N.tolist(), strict=True))


def cumulative_influence(graph: nx.DiGraph) -> dict[str, float]:
    """Step 3: each node but the metric -> the share of the total influence held by the nodes
    at least as strong (the strongest smallest, the weakest 1.0; all 1.0 when no node reaches
    the metric). Ties keep the graph's node order."""
    metric = _metric_node(graph)
    influence = {n: v for n, v in node_influence(graph).items() if n != metric}
    total = sum(influence.values())
    ranked = sorted(influence, key=lambda n: -influence[n])
    shares, running = {}, 0.0
    for name in ranked:
        running += influence[name]
        shares[name] = min(1.0, running / total) if total > 0 else 1.0
    return shares


def _share_threshold(scores: np.ndarray, share: float) -> float:
    """The smallest score among the strongest scores that together reach ``share`` of the
    total (circuit-tracer's ``find_threshold``); ``inf`` when the total is 0."""
    ranked = np.sort(scores)[::-1]
    total = ranked.sum()
    if total <= 0:
        return float("inf")
    index = int(np.searchsorted(np.cumsum(ranked) / total, share))
    return float(ranked[min(index, len(ranked) - 1)])


def prune_by_influence(
    graph: nx.DiGraph, *, node_share: float = 0.8, edge_share: float = 0.98
) -> nx.DiGraph:
    """The circuit pruned by cumulative influence (step 4): a new graph with the kept nodes
    and edges and the same graph attributes. circuit-tracer's defaults: 0.8 and 0.98."""
    for name, share in (("node_share", node_share), ("edge_share", edge_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {share}")
    nodes = list(graph.nodes)
    A_NN = normalised_adjacency(graph, nodes)
    target_N = _target(graph, nodes)
    influence_N = _influence(A_NN, target_N)
    is_metric_N = target_N > 0
    keep_N = is_metric_N.copy()
    candidates_N = ~is_metric_N
    if candidates_N.any():
        threshold = _share_threshold(influence_N[candidates_N], node_share)
        keep_N |= candidates_N & (influence_N >= threshold) & (influence_N > 0)
    pruned_NN = A_NN * keep_N[:, None] * keep_N[None, :]
    pruned_NN = pruned_NN / np.maximum(pruned_NN.sum(axis=1, keepdims=True), 1e-10)
    edge_NN = pruned_NN * (_influence(pruned_NN, target_N) + target_N)[:, None]
    scores = edge_NN[edge_NN > 0]
    edge_kept_NN = (
        (edge_NN >= _share_threshold(scores, edge_share)) & (edge_NN > 0)
        if scores.size
        else np.zeros_like(edge_NN, dtype=bool)
    )
    inputs = input_nodes(graph)
    exempt_N = np.array([n in inputs or bool(graph.nodes[n].get("is_error")) for n in nodes])
    while True:
        edge_kept_NN &= keep_N[:, None] & keep_N[None, :]
        has_out_N = edge_kept_NN.any(axis=0)
        has_in_N = edge_kept_NN.any(axis=1)
        new_N = keep_N & (is_metric_N | (has_out_N & (has_in_N | exempt_N)))
        if (new_N == keep_N).all():
            break
        keep_N = new_N
    kept = [n for n, k in zip(nodes, keep_N, strict=True) if k]
    pruned = nx.DiGraph(**graph.graph)
    pruned.add_nodes_from((n, graph.nodes[n]) for n in kept)
    index = {n: i for i, n in enumerate(nodes)}
    pruned.add_edges_from(
        (u, v, data) for u, v, data in graph.edges(data=True) if edge_kept_NN[index[v], index[u]]
    )
    return pruned


@dataclass(frozen=True)
class GraphScores:
    """circuit-tracer's two scores of a circuit graph (step 5), each in [0, 1]; NaN when
    undefined (no influence reaches input or error nodes)."""

    replacement: float
    """Influence of the input nodes / influence of input and error nodes."""
    completeness: float
    """Influence-weighted share of the nodes' inputs that comes from non-error nodes."""


def graph_scores(graph: nx.DiGraph) -> GraphScores:
    """Replacement and completeness scores of ``graph`` as it is (already pruned)."""
    nodes = list(graph.nodes)
    is_error_N = np.array([bool(graph.nodes[n].get("is_error")) for n in nodes], dtype=bool)
    A_NN = normalised_adjacency(graph, nodes) * ~is_error_N[:, None]  # errors are sources
    target_N = _target(graph, nodes)
    influence_N = _influence(A_NN, target_N)
    inputs = input_nodes(graph)
    is_input_N = np.array([n in inputs for n in nodes], dtype=bool)
    from_inputs, from_errors = influence_N[is_input_N].sum(), influence_N[is_error_N].sum()
    both = from_inputs + from_errors
    replacement = float(from_inputs / both) if both > 0 else float("nan")
    non_error_N = 1.0 - A_NN[:, is_error_N].sum(axis=1)
    weight_N = influence_N + target_N
    total = weight_N.sum()
    completeness = float((non_error_N * weight_N).sum() / total) if total > 0 else float("nan")
    return GraphScores(replacement=replacement, completeness=completeness)
