"""The demo: the subject-verb agreement circuit of the default model with the starter
dictionaries, checked on held-out prompts (the ``demo`` command; README, "Faithfulness").

1. Load the model; unless places are given, choose ``resid`` at ``n_places`` evenly spaced
   layers of its real depth (``places.spaced_layers``); load those places' dictionaries.
2. Discover the circuit on the template's training split and write it as JSON, the readable
   HTML figure, GraphML and the Neuronpedia graph JSON (``discover.discover_and_write``).
3. Score the selected nodes' faithfulness and completeness on the template's test split, and
   the graph's replacement and completeness scores (``discovery.influence``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparse_circuits.circuits.data.agreement_sets import TEMPLATES, agreement_file
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, Method
from sparse_circuits.circuits.discovery.discover import (
    CircuitFiles,
    DiscoverConfig,
    discover_and_write,
    load_prompt_batches,
)
from sparse_circuits.circuits.discovery.faithfulness import CircuitScore, score_selection
from sparse_circuits.circuits.discovery.influence import GraphScores, graph_scores
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.model.loading import DEFAULT_MODEL, load_model
from sparse_circuits.circuits.model.places import spaced_layers
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.errors import ConfigError
from sparse_circuits.precision import Precision, precision_name

__all__ = ["STARTER", "DemoConfig", "DemoResult", "run_demo"]

STARTER = Path(__file__).resolve().parents[2] / "starter" / "smollm2-135m"
"""The starter dictionaries trained for the embedded default model (see starter/README.md)."""


@dataclass
class DemoConfig:
    """What the demo discovers, and how; the defaults are the README's demo."""

    dictionaries: Path = STARTER
    """Dictionary set with a dictionary for every place used."""
    template: str = "across_rc"
    """Agreement template (``agreement_sets.TEMPLATES``): its train split finds the circuit,
    its test split checks it."""
    places: list[str] | None = None
    """Places of the circuit; ``None``: ``resid`` at ``n_places`` evenly spaced layers."""
    n_places: int = 5
    """Mean-ablating every layer's residual stream composes one lossy replacement per layer,
    and no circuit of a few hundred nodes survives thirty of them (README, "Faithfulness");
    five places keep the circuit faithful."""
    examples: int = 64
    """Training prompts used: the first this many of each batch of equal-length prompts
    (0: all)."""
    method: Method = "attrib"
    """How node effects are computed (``AttributionConfig.method``)."""
    node_threshold: float = 0.005
    """Keep nodes with |effect| at least this, in logit-difference units; the README's
    faithfulness curve shows why this value."""
    edge_threshold: float = 0.02
    """Keep edges with |weight| at least this (unless pruning by influence)."""
    node_influence: float | None = None
    """Prune by cumulative influence instead (``DiscoverConfig.node_influence``)."""
    edge_influence: float | None = None
    """Prune by cumulative influence instead (``DiscoverConfig.edge_influence``)."""
    supernode_cosine: float | None = None
    """Group similar features into supernodes (``DiscoverConfig.supernode_cosine``)."""
    label_tokens: int = 4096
    """Corpus tokens scanned for the top activating contexts of each feature node (0: none)."""
    batch_size: int = 32
    """Prompts per forward pass."""

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ConfigError(
                f"template must be one of {', '.join(TEMPLATES)}, got {self.template!r}"
            )
        if self.places is None and self.n_places < 1:
            raise ConfigError(f"n_places must be at least 1, got {self.n_places}")
        if self.places is not None and not self.places:
            raise ConfigError("places is empty")
        if self.examples < 0:
            raise ConfigError(f"examples must be >= 0, got {self.examples}")
        self.discover_config()  # its own checks: method, thresholds, label tokens, batch size

    def discover_config(self) -> DiscoverConfig:
        return DiscoverConfig(
            AttributionConfig(method=self.method, batch_size=self.batch_size),
            node_threshold=self.node_threshold,
            edge_threshold=self.edge_threshold,
            node_influence=self.node_influence,
            edge_influence=self.edge_influence,
            supernode_cosine=self.supernode_cosine,
            label_tokens=self.label_tokens,
        )


@dataclass
class DemoResult:
    """What ``run_demo`` wrote and measured."""

    paths: dict[str, Path]
    """``circuit``, ``html``, ``graphml``, ``neuronpedia`` -> the file written."""
    prompts: dict[str, Path]
    """``train`` (the circuit's prompts) and ``test`` (held out) -> prompt file."""
    places: list[str]
    """The places the circuit spans."""
    score: CircuitScore
    """Faithfulness and completeness of the selected nodes on the test split."""
    n_edges: int
    """Edges of the circuit."""
    precision: str
    """Precision of the model's products the run used (``float32``, ``bfloat16``)."""
    figure_nodes: int
    """Nodes the figure draws (``export.html.figure_circuit``), the metric left out."""
    graph_scores: GraphScores
    """circuit-tracer's replacement and completeness scores of the circuit graph."""
    seconds: float
    """Wall time of the whole run."""

    def summary(self) -> dict[str, Any]:
        """The one-line JSON summary the ``demo`` command prints."""
        return {
            **{name: str(path) for name, path in self.paths.items()},
            "prompts": {split: str(path) for split, path in self.prompts.items()},
            "nodes": self.score.n_nodes,
            "edges": self.n_edges,
            "faithfulness": round(self.score.faithfulness, 3),
            "completeness": round(self.score.completeness, 3),
            "precision": self.precision,
            "figure_nodes": self.figure_nodes,
            "replacement_score": round(self.graph_scores.replacement, 3),
            "completeness_score": round(self.graph_scores.completeness, 3),
            "seconds": round(self.seconds, 1),
        }


def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    *,
    model: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    precision: Precision = "auto",
    progress: bool = True,
) -> DemoResult:
    """Discover the demo's circuit on ``model``, write ``circuit.json``, ``circuit.html`` (the
    readable figure), ``circuit.graphml`` and ``circuit.neuronpedia.json`` into the folder
    ``out`` (made if missing) and score the circuit on the held-out prompts."""
    started = time.perf_counter()
    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = CircuitFiles(
        out / "circuit.json",
        html=out / "circuit.html",
        graphml=out / "circuit.graphml",
        neuronpedia=out / "circuit.neuronpedia.json",
    )
    lm, adapter = load_model(model, device=device, precision=precision)
    places = config.places or [
        f"resid.{layer}" for layer in spaced_layers(adapter.n_layers, config.n_places)
    ]
    dictionaries = load_dictionary_set(config.dictionaries, places, device=device)
    prompts = {split: agreement_file(config.template, split) for split in ("train", "test")}
    written = discover_and_write(
        lm, adapter, dictionaries, prompts["train"], config.discover_config(), files,
        settings={"model": str(model), "dictionaries": str(config.dictionaries)},
        examples=config.examples, progress=progress,
    )  # fmt: skip
    test_batches = load_prompt_batches(lm.tokenizer, prompts["test"])
    selection = select_nodes(written.effects, threshold=config.node_threshold)
    (score,) = score_selection(
        lm, adapter, dictionaries, test_batches, [selection], progress=progress
    )
    from sparse_circuits.circuits.export.html import figure_circuit

    drawn, _ = figure_circuit(written.graph)
    return DemoResult(
        paths=written.paths,
        prompts=prompts,
        places=list(dictionaries),
        score=score,
        n_edges=written.graph.number_of_edges(),
        precision=precision_name(adapter.dtype),
        figure_nodes=drawn.number_of_nodes() - 1,
        graph_scores=graph_scores(written.graph),
        seconds=time.perf_counter() - started,
    )
