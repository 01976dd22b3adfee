"""Circuits as ``networkx.DiGraph``s, and their JSON file.

Meaning of the graph (the one place it is defined):

- **Node id**: ``"<place>/<feature>"`` for a feature, ``"<place>/err"`` for the error node,
  with ``"@<position>"`` appended when aggregation is ``none``; ``"metric"`` for the metric.
- **Node attributes**: ``place`` (``resid.3``), ``kind`` (embed/attn/mlp_in/mlp/resid/metric),
  ``layer`` (-1 for embed; ``n_layers`` for the metric), ``feature`` (int, -1 for the error
  and the metric), ``is_error`` (bool), ``position`` (int, -1 when summed over positions),
  ``effect`` (mean effect on the metric of patching the node, clean to patch), ``activation``
  (mean clean activation), ``label`` (text; top activating contexts when labelled).
- **Cross-layer transcoders** (``dictionaries.cross_layer``): the features of layer N are the
  nodes ``mlp.N/<feature>`` (``layer`` N: they read ``mlp_in.N``) although they write
  ``mlp.N`` and every later ``mlp.M``; ``mlp.M/err`` is the one error of ``mlp.M``, what all
  the layers N <= M together do not reconstruct. A feature's ``effect`` is that of changing
  its writes into every one of those places at once; an edge from it collects its direct
  paths from all of them. Edges into ``mlp.M/err`` treat it as the MLP's output minus the
  CLT's reconstruction, both computed from the MLP inputs at M and before.
- **Edges** point downstream, source to target (upstream node -> downstream node, or ->
  ``metric``), with attribute ``weight``: the effect of the source on the metric through the
  target along direct paths (``circuits.edges``).
- **Graph attributes**: ``settings`` (model, dictionaries, method, steps, aggregation,
  thresholds, metric, precision, number of examples, prompts) and ``metric_clean``/``metric_patch``.

List-valued attributes: ``top_contexts`` (set by ``labels.label_circuit``) is a list of
``{"activation", "text", "context", "position"}``, highest first. The circuit JSON keeps it a
list; GraphML, whose values are scalars, holds it (and any other list or dictionary) as JSON
text, ``json.loads`` gives the list back (``circuits.export.graphml``).

The JSON file holds ``schema``, ``settings``, ``metric_clean``, ``metric_patch``, ``nodes``
(each node's attributes plus ``id``) and ``edges`` (``source``, ``target``, ``weight``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import torch

from sparse_circuits.circuits.discovery.nodes import (
    NodeEffects,
    NodeKey,
    NodeSelection,
    node_id,
)
from sparse_circuits.circuits.model.places import Place, parse_place
from sparse_circuits.files import write_text_atomic

__all__ = [
    "SCHEMA",
    "build_circuit",
    "save_circuit",
    "load_circuit",
    "CircuitFileError",
    "selection_from_circuit",
    "is_metric",
]

SCHEMA = "sparse-circuits/circuit@1"


class CircuitFileError(ValueError):
    """A circuit file that cannot be read; the message names it."""


def is_metric(data: Mapping[str, Any]) -> bool:
    """Whether a node's data is the metric node's."""
    return data.get("kind") == "metric" or data.get("place") == "metric"


def _place_attributes(place: str, n_layers: int) -> dict[str, Any]:
    parsed: Place = parse_place(place, n_layers)
    return {"place": place, "kind": parsed.kind, "layer": parsed.layer}


def build_circuit(
    effects: NodeEffects,
    selection: NodeSelection,
    edges: dict[tuple[NodeKey, NodeKey], float],
    *,
    n_layers: int,
    edge_threshold: float = 0.0,
    settings: dict[str, Any] | None = None,
    labels: dict[NodeKey, str] | None = None,
) -> nx.DiGraph:
    """The circuit: selected nodes, the metric node, and edges with |weight| >= threshold."""
    graph = nx.DiGraph(
        settings=settings or {},
        metric_clean=effects.metric_clean,
        metric_patch=effects.metric_patch,
    )
    labels = labels or {}
    for place in effects.features:
        for key in selection.keys(place):
            _, feature, position = key
            at = () if position < 0 else (position,)
            if feature < 0:
                effect = effects.errors[place][at]
                activation = float("nan")
            else:
                effect = effects.features[place][at + (feature,)]
                activation = float(effects.activations[place][at + (feature,)])
            graph.add_node(
                node_id(key),
                **_place_attributes(place, n_layers),
                feature=feature,
                is_error=feature < 0,
                position=position,
                effect=float(effect),
                activation=activation,
                label=labels.get(key, ""),
            )
    graph.add_node(
        "metric",
        place="metric",
        kind="metric",
        layer=n_layers,
        feature=-1,
        is_error=False,
        position=-1,
        effect=effects.metric_clean - effects.metric_patch,
        activation=float("nan"),
        label=str((settings or {}).get("metric", "metric")),
    )
    for (source, target), weight in edges.items():
        if abs(weight) < edge_threshold:
            continue
        u, d = node_id(source), node_id(target)
        if u in graph and d in graph:
            graph.add_edge(u, d, weight=float(weight))
    return graph


def selection_from_circuit(graph: nx.DiGraph, effects_shapes: dict[str, tuple]) -> NodeSelection:
    """Masks of the circuit's nodes, shaped like node effects (``place -> shape`` of the
    feature effects: ``(F,)`` or ``(T, F)``)."""
    features = {p: torch.zeros(shape, dtype=torch.bool) for p, shape in effects_shapes.items()}
    errors = {p: torch.zeros(shape[:-1], dtype=torch.bool) for p, shape in effects_shapes.items()}
    for _, data in graph.nodes(data=True):
        place = data["place"]
        if place not in features:
            continue
        at = () if data["position"] < 0 else (data["position"],)
        if data["is_error"]:
            errors[place][at] = True
        else:
            features[place][at + (data["feature"],)] = True
    return NodeSelection(features, errors)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def save_circuit(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write the circuit JSON atomically (a missing folder is an error, not created)."""
    path = Path(path)
    document = {
        "schema": SCHEMA,
        "settings": graph.graph.get("settings", {}),
        "metric_clean": graph.graph.get("metric_clean"),
        "metric_patch": graph.graph.get("metric_patch"),
        "nodes": [
            {"id": n, **{k: _json_value(v) for k, v in data.items()}}
            for n, data in graph.nodes(data=True)
        ],
        "edges": [
            {"source": u, "target": v, "weight": data["weight"]}
            for u, v, data in graph.edges(data=True)
        ],
    }
    return write_text_atomic(path, json.dumps(document, indent=1))


def load_circuit(path: str | Path) -> nx.DiGraph:
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise CircuitFileError(f"{path}: circuit file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CircuitFileError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise CircuitFileError(f"{path}: not a sparse-circuits circuit (schema {SCHEMA})")
    graph = nx.DiGraph(
        settings=document.get("settings", {}),
        metric_clean=document.get("metric_clean"),
        metric_patch=document.get("metric_patch"),
    )
    for node in document["nodes"]:
        data = dict(node)
        name = data.pop("id")
        if data.get("activation") is None:
            data["activation"] = float("nan")
        graph.add_node(name, **data)
    for edge in document["edges"]:
        graph.add_edge(edge["source"], edge["target"], weight=edge["weight"])
    return graph
