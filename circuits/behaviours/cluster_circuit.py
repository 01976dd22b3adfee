"""One cluster's circuit, and what the site shows of it (Marks et al. 2024, section 5).

1. Split the cluster's contexts in a seeded order: ``held_out`` of them (at least two, for
   clusters of four or more; none for smaller ones) to score the circuit on, then up to
   ``examples`` to discover it with.
2. The circuit of the discovery contexts (``discover_circuit`` with ``discover``): zero
   baseline (no patch prompts), the metric the log-probability of each context's own answer
   (``AnswerLogProb``), effects summed over positions, nodes with |effect| >= its
   ``node_threshold``, edges with |weight| >= its ``edge_threshold``. Defaults as in the
   paper's reference code: 100 examples, thresholds 0.1 and 0.01.
3. Its faithfulness on the held-out contexts, everything outside the circuit mean-ablated
   (``score_selection``).
4. Its top features by |effect|, each with its top activating contexts over a fixed sample of
   token windows (``top_activating_contexts``), written onto the graph as labels too.
5. A one-line summary of what the contexts share: their most frequent answers and last prefix
   tokens.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch

from sparse_circuits.circuits.behaviours.contexts import Contexts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig
from sparse_circuits.circuits.discovery.discover import DiscoverConfig, discover_circuit
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.labels import (
    feature_nodes,
    label_circuit,
    top_activating_contexts,
)
from sparse_circuits.circuits.discovery.metrics import AnswerLogProb
from sparse_circuits.circuits.discovery.nodes import node_id, select_nodes
from sparse_circuits.circuits.model.adapters import ModelAdapter
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.errors import ConfigError

__all__ = [
    "ClusterCircuitConfig",
    "ClusterCircuit",
    "cluster_circuit",
    "split_members",
    "summarize",
]


def _paper_discovery() -> DiscoverConfig:
    """Attribution patching summed over positions, node threshold 0.1 and edge threshold 0.01:
    ``DiscoverConfig``'s defaults, the paper's reference code's settings for its clusters."""
    return DiscoverConfig(AttributionConfig())


@dataclass
class ClusterCircuitConfig:
    """How ``cluster_circuit`` finds, scores and shows one cluster's circuit."""

    discover: DiscoverConfig = field(default_factory=_paper_discovery)
    """How the circuit is found (method, thresholds, batch size); effects summed over
    positions."""
    examples: int = 100
    """Discovery contexts per cluster, at most (the paper's reference code: 100)."""
    held_out: float = 0.2
    """Share of a cluster's contexts kept back to score faithfulness on."""
    top_features: int = 10
    """Features listed (with their top activating contexts) on the cluster's page."""
    label_contexts: int = 5
    """Top activating contexts shown per feature."""
    seed: int = 0
    """Seed of the held-out split (each cluster adds its id)."""

    def __post_init__(self) -> None:
        aggregation = self.discover.attribution.aggregation
        if aggregation != "sum":
            raise ConfigError(
                f"aggregation must be sum for a cluster's circuit, got {aggregation!r}"
            )
        if self.examples < 1:
            raise ConfigError(f"examples must be at least 1, got {self.examples}")
        if not 0 <= self.held_out < 1:
            raise ConfigError(f"held_out must be in [0, 1), got {self.held_out}")
        if self.top_features < 0:
            raise ConfigError(f"top_features must be >= 0, got {self.top_features}")
        if self.label_contexts < 1:
            raise ConfigError(f"label_contexts must be at least 1, got {self.label_contexts}")


@dataclass
class ClusterCircuit:
    graph: nx.DiGraph
    discovery: list[int]
    """Contexts the circuit was discovered on."""
    held_out: list[int]
    """Contexts its faithfulness was scored on (empty for a small cluster)."""
    faithfulness: float | None
    """``None`` without held-out contexts."""
    top_features: list[dict[str, Any]]
    """``{"node", "place", "feature", "effect", "contexts"}``, largest |effect| first."""
    summary: str


def split_members(
    members: Sequence[int], *, held_out: float, examples: int, seed: int
) -> tuple[list[int], list[int]]:
    """``(discovery, held_out)`` contexts of a cluster (step 1 of the module's docstring)."""
    order = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed))
    shuffled = [int(members[i]) for i in order]
    n_held = max(2, round(held_out * len(members))) if held_out > 0 and len(members) >= 4 else 0
    return shuffled[n_held:][:examples], shuffled[:n_held]


def _quoted_counts(counter: Counter, n: int) -> str:
    return ", ".join(
        f"{json.dumps(text, ensure_ascii=False)} ({count})"
        for text, count in counter.most_common(n)
    )


def summarize(tokenizer: Any, contexts: Contexts, members: Sequence[int], *, n: int = 3) -> str:
    """``answers "x" (12), "y" (3); after "z" (9), ...``: the ``n`` most frequent answers and
    last prefix tokens of the contexts ``members``."""
    rows = torch.as_tensor(list(members), dtype=torch.long)
    answers = Counter(tokenizer.decode([int(t)]) for t in contexts.answers_N[rows])
    lasts = Counter(tokenizer.decode([int(t)]) for t in contexts.ids_NT[rows, -1])
    return f"answers {_quoted_counts(answers, n)}; after {_quoted_counts(lasts, n)}"


def _faithfulness(
    model, adapter, dictionaries, contexts, held_out, effects, config
) -> float | None:
    if not held_out:
        return None
    discover = config.discover
    selection = select_nodes(effects, threshold=discover.node_threshold, top_k=discover.top_k)
    try:
        (score,) = score_selection(
            model, adapter, dictionaries, [contexts.batch(held_out)], [selection],
            metric=AnswerLogProb(), progress=False,
        )  # fmt: skip
    except ZeroDivisionError:  # ablating everything changes nothing: no scale to score on
        return None
    return score.faithfulness if math.isfinite(score.faithfulness) else None


def _top_features(model, adapter, dictionaries, graph, windows_NT, config) -> list[dict[str, Any]]:
    nodes = sorted(feature_nodes(graph), key=lambda key: -abs(graph.nodes[node_id(key)]["effect"]))
    nodes = nodes[: config.top_features]
    if not nodes or len(windows_NT) == 0:
        return []
    hits = top_activating_contexts(
        model, adapter, dictionaries, nodes, windows_NT,
        k=config.label_contexts, batch_size=config.discover.attribution.batch_size,
        progress=False,
    )  # fmt: skip
    label_circuit(graph, hits)
    return [
        {
            "node": node_id(key),
            "place": key[0],
            "feature": key[1],
            "effect": float(graph.nodes[node_id(key)]["effect"]),
            "contexts": [{"text": h["text"], "activation": h["activation"]} for h in hits[key]],
        }
        for key in nodes
    ]


def cluster_circuit(
    model: Any,
    adapter: ModelAdapter,
    dictionaries: Mapping[str, Dictionary],
    contexts: Contexts,
    members: Sequence[int],
    config: ClusterCircuitConfig,
    *,
    cluster: int,
    label_windows_NT: torch.Tensor,
    settings: dict[str, Any] | None = None,
) -> ClusterCircuit:
    """The circuit of one cluster's contexts ``members`` and what its page shows (steps in the
    module's docstring); ``label_windows_NT`` ``(M, T)`` are the token windows scanned for the
    top features' contexts."""
    if not members:
        raise ValueError(f"cluster {cluster} has no contexts")
    discovery, held_out = split_members(
        members, held_out=config.held_out, examples=config.examples, seed=config.seed + cluster
    )
    recorded = {**(settings or {}), "cluster": cluster, "baseline": "zero"}
    graph, effects = discover_circuit(
        model, adapter, dictionaries, [contexts.batch(discovery)], config.discover,
        metric=AnswerLogProb(), settings=recorded, progress=False,
    )  # fmt: skip
    faithfulness = _faithfulness(model, adapter, dictionaries, contexts, held_out, effects, config)
    top = _top_features(model, adapter, dictionaries, graph, label_windows_NT, config)
    summary = summarize(model.tokenizer, contexts, members)
    return ClusterCircuit(graph, discovery, held_out, faithfulness, top, summary)
