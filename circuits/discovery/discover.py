"""Discover a sparse feature circuit end to end: the ``discover`` command's pipeline.

1. Read and tokenise the prompt set (answers must be single tokens).
2. Node effects of every feature and error node at every place with a dictionary.
3. Select nodes by |effect| >= node threshold (or the top k).
4. Edge effects between selected nodes (direct paths), kept if |weight| >= edge threshold;
   or, with ``node_influence``/``edge_influence``, every edge kept and the graph pruned by
   cumulative influence instead (circuit-tracer's pruning, ``circuits.discovery.influence``).
5. Build the graph with its settings and provenance; optionally label feature nodes with
   their top activating contexts over a corpus. Warn (``CircuitWarning``) when error nodes
   carry more than ``ERROR_SHARE`` of the circuit's |effect|.
6. ``discover_and_write``: steps 1-5 from a prompt file, then write the circuit JSON and the
   exports asked for (the ``discover`` and ``demo`` commands).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import networkx as nx

from sparse_circuits.circuits.data.prompts import PromptBatch, read_prompts, tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.graph import build_circuit, is_metric, save_circuit
from sparse_circuits.circuits.discovery.influence import prune_by_influence
from sparse_circuits.circuits.discovery.metrics import LogitDiff, Metric
from sparse_circuits.circuits.discovery.nodes import NodeEffects, select_nodes
from sparse_circuits.circuits.model.runner import BatchCache
from sparse_circuits.circuits.model.splice import cast_dictionaries
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.errors import CircuitWarning, ConfigError
from sparse_circuits.files import require_folder
from sparse_circuits.precision import precision_name

__all__ = [
    "ERROR_SHARE",
    "error_share",
    "CircuitFiles",
    "DiscoverConfig",
    "WrittenCircuit",
    "discover_and_write",
    "discover_circuit",
    "load_prompt_batches",
    "prompt_settings",
]


ERROR_SHARE = 0.5
"""``discover_circuit`` warns when error nodes carry more than this share of the circuit's
total |effect|: the features then explain less of the behaviour than what the dictionaries
miss."""


def error_share(graph: nx.DiGraph) -> float:
    """The error nodes' share of the circuit's total |effect| (metric left out; 0 for a
    circuit of no effect)."""
    strengths = [
        (abs(float(d["effect"])), bool(d.get("is_error")))
        for _, d in graph.nodes(data=True)
        if not is_metric(d)
    ]
    total = sum(s for s, _ in strengths)
    return sum(s for s, error in strengths if error) / total if total > 0 else 0.0


def _warn_if_errors_dominate(graph: nx.DiGraph) -> None:
    share = error_share(graph)
    if share > ERROR_SHARE:
        warnings.warn(
            f"error nodes carry {share:.0%} of the circuit's |effect| (more than "
            f"{ERROR_SHARE:.0%}): the features explain less of the behaviour than the "
            "dictionaries' reconstruction errors; use dictionaries with lower reconstruction "
            "error (larger, trained longer) or at more places",
            CircuitWarning,
            stacklevel=3,
        )


@dataclass
class DiscoverConfig:
    """How ``discover_circuit`` scores, selects and labels nodes and edges."""

    attribution: AttributionConfig
    """How node effects are computed (edges use its aggregation and batch size)."""
    node_threshold: float | None = 0.1
    """Keep nodes with |effect| at least this (in units of the metric)."""
    top_k: int | None = None
    """Keep the ``top_k`` nodes by |effect| instead of a threshold."""
    edge_threshold: float = 0.01
    """Keep edges with |weight| at least this (unless pruning by influence)."""
    node_influence: float | None = None
    """Prune by cumulative influence: keep the nodes carrying this share of the influence on
    the metric (circuit-tracer's default 0.8). With it or ``edge_influence`` every edge
    between the selected nodes is kept and the graph pruned by influence instead of
    ``edge_threshold``; the share not given is 1.0 (keep all)."""
    edge_influence: float | None = None
    """Prune by cumulative influence: keep the edges carrying this share of the edge influence
    (circuit-tracer's default 0.98); see ``node_influence``."""
    supernode_cosine: float | None = None
    """Group the feature nodes of one place (and position) whose decoder rows have at least
    this cosine into supernodes (``discovery.supernodes``; the figure draws each as one
    node); ``None``: no grouping."""
    label_tokens: int = 0
    """Corpus tokens scanned for top activating contexts of each feature node (0: none)."""
    label_corpus: str = "embedded"
    """Corpus the labels come from (``circuits.data.corpus.read_documents``)."""

    def __post_init__(self) -> None:
        if self.top_k is not None:
            if self.top_k < 1:
                raise ConfigError(f"top_k must be at least 1, got {self.top_k}")
            self.node_threshold = None
        elif self.node_threshold is None:
            raise ConfigError("select nodes with node_threshold or top_k")
        if self.node_threshold is not None and self.node_threshold < 0:
            raise ConfigError(f"node_threshold must be >= 0, got {self.node_threshold}")
        if self.edge_threshold < 0:
            raise ConfigError(f"edge_threshold must be >= 0, got {self.edge_threshold}")
        if self.label_tokens < 0:
            raise ConfigError(f"label_tokens must be >= 0, got {self.label_tokens}")
        if self.supernode_cosine is not None and not -1.0 <= self.supernode_cosine <= 1.0:
            raise ConfigError(
                f"supernode_cosine must be between -1 and 1, got {self.supernode_cosine}"
            )
        for name in ("node_influence", "edge_influence"):
            share = getattr(self, name)
            if share is not None and not 0.0 <= share <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {share}")

    @property
    def by_influence(self) -> bool:
        """Whether the graph is pruned by cumulative influence (not by edge threshold)."""
        return self.node_influence is not None or self.edge_influence is not None


def load_prompt_batches(
    tokenizer: Any, prompts: str | Path, *, aggregation: str = "sum"
) -> list[PromptBatch]:
    return tokenize_prompts(
        tokenizer, read_prompts(prompts), source=str(prompts), same_length=aggregation == "none"
    )


def prompt_settings(tokenizer: Any, batches: list[PromptBatch]) -> dict[str, Any]:
    """What viewers show of the prompts: ``prompt`` (the first clean prompt, as text),
    ``prompt_tokens`` (its tokens, one string each, the columns of per-position nodes) and
    ``prompt_length`` (the longest prompt's tokens)."""
    ids = batches[0].clean_ids[0].tolist()
    return {
        "prompt": tokenizer.decode(ids, skip_special_tokens=True),
        "prompt_tokens": [tokenizer.decode([i]) for i in ids],
        "prompt_length": max(batch.length for batch in batches),
    }


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
    """The circuit graph and the node effects it was selected from; a ``CircuitWarning``
    when its error nodes carry more than ``ERROR_SHARE`` of its |effect|."""
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
        "edge_threshold": None if config.by_influence else config.edge_threshold,
        "node_influence": config.node_influence,
        "edge_influence": config.edge_influence,
        "supernode_cosine": config.supernode_cosine,
        "metric": repr(metric),
        "precision": precision_name(adapter.dtype),
        "n_examples": effects.n_examples,
        "places": list(dictionaries),
        **prompt_settings(model.tokenizer, batches),
    }
    labels = None
    if config.label_tokens > 0:
        labels = _labels(model, adapter, dictionaries, selection, config, progress)
    graph = build_circuit(
        effects,
        selection,
        edges,
        n_layers=adapter.n_layers,
        edge_threshold=0.0 if config.by_influence else config.edge_threshold,
        settings=recorded,
    )
    if config.by_influence:
        graph = prune_by_influence(
            graph,
            node_share=1.0 if config.node_influence is None else config.node_influence,
            edge_share=1.0 if config.edge_influence is None else config.edge_influence,
        )
    if labels:
        from sparse_circuits.circuits.discovery.labels import label_circuit

        label_circuit(graph, labels)
    if config.supernode_cosine is not None:
        from sparse_circuits.circuits.discovery.supernodes import group_supernodes

        group_supernodes(graph, dictionaries, min_cosine=config.supernode_cosine)
    _warn_if_errors_dominate(graph)
    return graph, effects


def _labels(model, adapter, dictionaries, selection, config, progress):
    from sparse_circuits.circuits.discovery.labels import corpus_labels

    nodes = [key for place in selection.features for key in selection.keys(place) if key[1] >= 0]
    return corpus_labels(
        model, adapter, dictionaries, nodes,
        tokens=config.label_tokens, corpus=config.label_corpus, progress=progress,
    )  # fmt: skip


@dataclass
class CircuitFiles:
    """Where ``discover_and_write`` writes a circuit: its JSON and, under the name of their
    format (``circuits.export.FORMATS``), the exports asked for. Every folder must exist
    already, so that a typo fails before the slow part."""

    circuit: Path
    """The circuit JSON (``graph.save_circuit``)."""
    html: Path | None = None
    """Also the interactive figure (``export(..., "html")``)."""
    graphml: Path | None = None
    """Also GraphML (``export(..., "graphml")``)."""
    neuronpedia: Path | None = None
    """Also the Neuronpedia / circuit-tracer graph JSON (``export(..., "neuronpedia")``)."""

    def __post_init__(self) -> None:
        for name, path in self.paths().items():
            setattr(self, name, require_folder(path))

    def paths(self) -> dict[str, Path]:
        """``circuit``, ``html``, ``graphml``, ``neuronpedia`` -> path, for those asked for."""
        named = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: path for name, path in named.items() if path is not None}

    def write(
        self, graph: nx.DiGraph, *, options: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, Path]:
        """Write ``graph`` to every file asked for; the paths written, by name. ``options``
        holds, by format name, keyword options of its writer (``{"html": {"title": ...}}``)."""
        from sparse_circuits.circuits.export import export

        options = options or {}
        return {
            name: save_circuit(graph, path)
            if name == "circuit"
            else export(graph, path, name, **options.get(name, {}))
            for name, path in self.paths().items()
        }


@dataclass
class WrittenCircuit:
    """What ``discover_and_write`` found and wrote."""

    graph: nx.DiGraph
    """The circuit (see ``circuits.discovery.graph`` for its meaning)."""
    effects: NodeEffects
    """The node effects its nodes were selected from."""
    paths: dict[str, Path]
    """``circuit`` (and ``html``, ``graphml``, ``neuronpedia`` when asked for) -> the file
    written."""


def discover_and_write(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    prompts: str | Path,
    config: DiscoverConfig,
    files: CircuitFiles,
    *,
    settings: Mapping[str, Any] | None = None,
    examples: int = 0,
    progress: bool = True,
) -> WrittenCircuit:
    """The circuit of the prompt file ``prompts``, written to ``files``. ``examples`` keeps the
    first that many prompts of each batch of equal-length prompts (0: all); ``settings`` (the
    model's and the dictionaries' names) are recorded with the circuit, beside ``prompts``."""
    batches = load_prompt_batches(
        model.tokenizer, prompts, aggregation=config.attribution.aggregation
    )
    if examples:
        batches = [batch.split(examples)[0] for batch in batches]
    recorded = {**(settings or {}), "prompts": str(prompts)}
    graph, effects = discover_circuit(
        model, adapter, dictionaries, batches, config, settings=recorded, progress=progress
    )
    return WrittenCircuit(graph, effects, files.write(graph))
