"""Discover a sparse feature circuit end to end: the ``discover`` command's pipeline.

1. Read and tokenise the prompt set (answers must be single tokens).
2. Node effects of every feature and error node at every place with a dictionary.
3. Select nodes by |effect| >= node threshold (or the top k).
4. Edge effects between selected nodes (direct paths), kept if |weight| >= edge threshold.
5. Build the graph with its settings and provenance; optionally label feature nodes with
   their top activating contexts over a corpus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from sparse_circuits.circuits.data.prompts import PromptBatch, read_prompts, tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.graph import build_circuit
from sparse_circuits.circuits.discovery.metrics import LogitDiff, Metric
from sparse_circuits.circuits.discovery.nodes import NodeEffects, select_nodes
from sparse_circuits.circuits.model.runner import BatchCache
from sparse_circuits.circuits.model.splice import cast_dictionaries
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.precision import precision_name

__all__ = ["DiscoverConfig", "discover_circuit", "load_prompt_batches"]


@dataclass
class DiscoverConfig:
    attribution: AttributionConfig
    node_threshold: float | None = 0.1
    """Keep nodes with |effect| at least this (in units of the metric)."""
    top_k: int | None = None
    """Keep the ``top_k`` nodes by |effect| instead of a threshold."""
    edge_threshold: float = 0.01
    """Keep edges with |weight| at least this."""
    label_tokens: int = 0
    """Corpus tokens scanned for top activating contexts of each feature node (0: none)."""
    label_corpus: str = "embedded"

    def __post_init__(self) -> None:
        if self.top_k is not None:
            self.node_threshold = None
        elif self.node_threshold is None:
            raise ValueError("select nodes with --node-threshold or --top-k")
        if self.node_threshold is not None and self.node_threshold < 0:
            raise ValueError(f"--node-threshold must be >= 0, got {self.node_threshold}")
        if self.edge_threshold < 0:
            raise ValueError(f"--edge-threshold must be >= 0, got {self.edge_threshold}")


def load_prompt_batches(
    tokenizer: Any, prompts: str | Path, *, aggregation: str = "sum"
) -> list[PromptBatch]:
    return tokenize_prompts(
        tokenizer, read_prompts(prompts), source=str(prompts), same_length=aggregation == "none"
    )


def discover_circuit(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    batches: list[PromptBatch],
    config: DiscoverConfig,
    *,
    metric: Metric | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[nx.DiGraph, NodeEffects]:
    """The circuit graph and the node effects it was selected from."""
    metric = metric or LogitDiff()
    attribution = config.attribution
    dictionaries = cast_dictionaries(dictionaries, adapter.dtype)  # one cast for every pass
    cache: list[BatchCache] = []  # the node pass's values and gradients feed the edge pass
    effects = node_effects(
        model, adapter, dictionaries, batches,
        metric=metric, config=attribution, cache=cache, progress=progress,
    )  # fmt: skip
    selection = select_nodes(effects, threshold=config.node_threshold, top_k=config.top_k)
    edges = edge_effects(
        model,
        adapter,
        dictionaries,
        batches,
        selection,
        metric=metric,
        aggregation=attribution.aggregation,
        batch_size=attribution.batch_size,
        cache=cache,
        progress=progress,
    )
    recorded = {
        **(settings or {}),
        **asdict(attribution),
        "node_threshold": config.node_threshold,
        "top_k": config.top_k,
        "edge_threshold": config.edge_threshold,
        "metric": repr(metric),
        "precision": precision_name(adapter.dtype),
        "n_examples": effects.n_examples,
        "places": list(dictionaries),
    }
    labels = None
    if config.label_tokens > 0:
        labels = _labels(model, adapter, dictionaries, selection, config, progress)
    graph = build_circuit(
        effects,
        selection,
        edges,
        n_layers=adapter.n_layers,
        edge_threshold=config.edge_threshold,
        settings=recorded,
    )
    if labels:
        from sparse_circuits.circuits.discovery.labels import label_circuit

        label_circuit(graph, labels)
    return graph, effects


def _labels(model, adapter, dictionaries, selection, config, progress):
    from sparse_circuits.circuits.discovery.labels import corpus_labels

    nodes = [key for place in selection.features for key in selection.keys(place) if key[1] >= 0]
    return corpus_labels(
        model, adapter, dictionaries, nodes,
        tokens=config.label_tokens, corpus=config.label_corpus, progress=progress,
    )  # fmt: skip
