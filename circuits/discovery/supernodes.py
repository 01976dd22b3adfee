"""Supernodes: features of one place (and position) that write nearly the same direction,
grouped so that a figure shows one node for them (the grouping of Ameisen et al. 2025,
"Circuit Tracing", done there by hand; here by decoder cosine).

1. For each place (and, per position, each position) take the circuit's feature nodes and
   their decoder rows ``W_dec[feature]`` ``(d_out,)``, normalised.
2. Link two features when the cosine of their decoder rows is at least ``min_cosine``; each
   connected group of two or more is a supernode (single linkage).
3. Write ``supernode`` (``"<place>/S<k>"``, ``"@<position>"`` appended per position; ``k``
   counts from 1 by the group's strongest |effect|) on every member. Error nodes and the
   metric are never grouped.
"""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx
import torch

from sparse_circuits.circuits.discovery.graph import is_metric
from sparse_circuits.dictionaries import Dictionary

__all__ = ["group_supernodes"]


def _components(linked_NN: torch.Tensor) -> list[list[int]]:
    """Connected components of a symmetric boolean adjacency ``(N, N)``, each sorted."""
    unseen, groups = set(range(len(linked_NN))), []
    while unseen:
        stack, group = [min(unseen)], []
        unseen.discard(stack[0])
        while stack:
            i = stack.pop()
            group.append(i)
            for j in linked_NN[i].nonzero().flatten().tolist():
                if j in unseen:
                    unseen.discard(j)
                    stack.append(j)
        groups.append(sorted(group))
    return groups


def group_supernodes(
    graph: nx.DiGraph, dictionaries: Mapping[str, Dictionary], *, min_cosine: float = 0.5
) -> nx.DiGraph:
    """Mark supernodes on ``graph`` (changed in place, returned): feature nodes of one place
    and position whose decoder rows have cosine at least ``min_cosine``, linked."""
    if not -1.0 <= min_cosine <= 1.0:
        raise ValueError(f"min_cosine must be between -1 and 1, got {min_cosine}")
    members: dict[tuple[str, int], list[str]] = {}
    for name, data in graph.nodes(data=True):
        if is_metric(data) or data.get("is_error"):
            continue
        members.setdefault((str(data["place"]), int(data.get("position", -1))), []).append(name)
    for (place, position), names in members.items():
        if len(names) < 2 or place not in dictionaries:
            continue
        features = torch.tensor([int(graph.nodes[n]["feature"]) for n in names])
        with torch.no_grad():
            rows_ND = dictionaries[place].W_dec[features].float().cpu()
        rows_ND = rows_ND / rows_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        linked_NN = rows_ND @ rows_ND.T >= min_cosine
        groups = [g for g in _components(linked_NN) if len(g) > 1]
        groups.sort(key=lambda g: -max(abs(float(graph.nodes[names[i]]["effect"])) for i in g))
        for k, group in enumerate(groups, start=1):
            label = f"{place}/S{k}" + ("" if position < 0 else f"@{position}")
            for i in group:
                graph.nodes[names[i]]["supernode"] = label
    return graph
