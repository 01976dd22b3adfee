"""Neuronpedia graph JSON export of a circuit (``to_neuronpedia``).

The format of circuit-tracer's ``create_graph_files`` and Neuronpedia's graph viewer/uploader
(its ``graph-schema.json``): top-level ``metadata``, ``qParams``, ``nodes``, ``links``.

- ``metadata``: ``slug`` (default: the file name without ``.json``), ``scan`` (the model id;
  default ``settings["model"]``, else ``"unknown"``), ``transcoder_list`` (the dictionaries
  named in ``settings["dictionaries"]``), ``prompt_tokens`` and ``prompt`` (arguments, else
  ``settings["prompt_tokens"]``/``settings["prompt"]``; when the tokens are unknown, one
  placeholder ``"[t]"`` per position so the viewer still has a column per position, or one
  ``"[all positions]"`` column when effects are summed over positions), ``node_threshold``
  (the viewer's default cut on ``influence``; 1.0 shows every node), ``schema_version`` 1
  (``feature`` is the Cantor pairing of layer and index, see below), ``info`` (generator
  name and version, a description), ``generation_settings`` (our settings, as JSON) and, beyond
  the schema, ``metric_clean``/``metric_patch``.
- ``qParams``: the saved view state, empty: ``pinnedIds []``, ``supernodes []``,
  ``linkType "both"``, ``clickedId ""``, ``sg_pos ""``.
- ``nodes``, one per circuit node, with circuit-tracer's fields:

  ============== ========================================================================
  field          our data
  ============== ========================================================================
  layer          the place's index in the forward pass, as a string: ``embed`` "0",
                 ``attn.L`` 4L+1, ``mlp_in.L`` 4L+2, ``mlp.L`` 4L+3, ``resid.L`` 4L+4; the
                 metric one above the last place (4 * n_layers + 1). (Neuronpedia needs a
                 numeric layer; distinct places get distinct layers so ids never collide.
                 A circuit whose only nodes sit at ``embed`` has max layer 0, which the
                 viewer rejects.)
  ctx_idx        ``position``; with effects summed over positions, the last prompt position
  feature        features: Cantor pairing ``(l + i)(l + i + 1)/2 + i`` of layer ``l`` and
                 feature index ``i`` (schema 1); error nodes -1; the metric 0
  feature_type   features ``"cross layer transcoder"`` (the viewer's generic feature type,
                 whatever the dictionary: SAE or transcoder); error nodes ``"mlp
                 reconstruction error"``; the metric ``"logit"``. No ``"embedding"`` nodes:
                 we have no token nodes (``embed`` features are dictionary features).
  node_id        ``"{layer}_{index}_{ctx_idx}"``: index = the feature, -1 for an error, 0 for
                 the metric (circuit-tracer's pattern)
  jsNodeId       features ``"{layer}_{index}-0"`` (circuit-tracer), errors
                 ``"{layer}_-1-{ctx_idx}"``, the metric ``"L_0-{ctx_idx}"``
  clerp          the node's ``label`` (else ``"<place> #<feature>"`` / ``"<place> error"``);
                 the metric ``Output "<metric>" (p=1.000)``, the form the viewer parses
  influence      circuit-tracer's cumulative influence, from our effects: nodes ranked by
                 |effect|, the running sum of |effect| over the total (the strongest node
                 smallest, the weakest 1.0); ``None`` for the metric
  activation     ``activation`` (``None`` for errors and the metric)
  token_prob     0.0; the metric 1.0 (it is the one target; the viewer weights targets by it)
  is_target_logit  true for the metric only
  run_idx, reverse_ctx_idx  0
  ============== ========================================================================

  plus, beyond the schema, ``place``, ``effect`` and ``circuit_node`` (our node id).
- ``links``: one per circuit edge, ``source`` and ``target`` node ids (upstream to
  downstream, as in circuit-tracer) and ``weight`` our edge weight.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import networkx as nx

from sparse_circuits.circuits.export.common import (
    is_metric,
    json_safe,
    n_layers_of,
    node_positions,
    number,
)
from sparse_circuits.circuits.model.places import KINDS, parse_place
from sparse_circuits.files import write_text_atomic

__all__ = ["to_neuronpedia", "place_stream_index"]


def place_stream_index(place: str, n_layers: int) -> int:
    """A place's index in the forward pass: ``embed`` 0, then ``attn.L`` 4L+1, ``mlp_in.L``
    4L+2, ``mlp.L`` 4L+3, ``resid.L`` 4L+4; ``metric`` 4 * n_layers + 1."""
    if place == "metric":
        return len(KINDS) * n_layers + 1
    return parse_place(place, n_layers).order


def _cantor(layer: int, index: int) -> int:
    return (layer + index) * (layer + index + 1) // 2 + index


def _package_version() -> str:
    try:
        return importlib_metadata.version("sparse-circuits")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _prompt_tokens(graph: nx.DiGraph, given: list[str] | None) -> tuple[list[str], bool]:
    """The prompt's tokens, and whether they are real (not placeholders)."""
    settings = graph.graph.get("settings") or {}
    tokens = given if given is not None else settings.get("prompt_tokens")
    if tokens:
        return [str(t) for t in tokens], True
    positions = node_positions(graph)
    if positions:
        return [f"[{t}]" for t in range(positions[-1] + 1)], False
    return ["[all positions]"], False


def _transcoder_list(settings: Mapping[str, Any]) -> list[str]:
    named = settings.get("dictionaries")
    if isinstance(named, Mapping):
        return [str(v) for v in named.values()]
    if isinstance(named, list | tuple):
        return [str(v) for v in named]
    return [] if named is None else [str(named)]


def _influence(graph: nx.DiGraph) -> dict[str, float]:
    """circuit-tracer's cumulative influence from |effect|: strongest node smallest."""
    strengths = {
        n: abs(number(d.get("effect")))
        for n, d in graph.nodes(data=True)
        if not is_metric(d) and not math.isnan(number(d.get("effect")))
    }
    total = sum(strengths.values())
    ranked = sorted(strengths, key=lambda n: -strengths[n])
    influence, running = {}, 0.0
    for n in ranked:
        running += strengths[n]
        influence[n] = min(1.0, running / total) if total > 0 else 1.0
    return influence


def to_neuronpedia(
    graph: nx.DiGraph,
    path: str | Path,
    *,
    slug: str | None = None,
    scan: str | None = None,
    prompt: str | None = None,
    prompt_tokens: list[str] | None = None,
    node_threshold: float = 1.0,
) -> Path:
    """Write the circuit as a Neuronpedia / circuit-tracer graph JSON, atomically (field
    mapping in the module docstring)."""
    path = Path(path)
    settings = graph.graph.get("settings") or {}
    n_layers = n_layers_of(graph)
    tokens, real_tokens = _prompt_tokens(graph, prompt_tokens)
    last = len(tokens) - 1
    influence = _influence(graph)
    nodes, ids = [], {}
    for name, data in graph.nodes(data=True):
        place = str(data.get("place", "metric"))
        layer = place_stream_index(place, n_layers)
        position = int(data.get("position", -1))
        ctx = position if position >= 0 else last
        activation = number(data.get("activation"))
        effect = number(data.get("effect"))
        label = str(data.get("label") or "")
        common = {
            "layer": str(layer),
            "ctx_idx": ctx,
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "influence": influence.get(name),
            "activation": None if math.isnan(activation) else activation,
        }
        if is_metric(data):
            metric = label or str(settings.get("metric", "metric"))
            node = {
                "node_id": f"{layer}_0_{ctx}",
                "feature": 0,
                "feature_type": "logit",
                "jsNodeId": f"L_0-{ctx}",
                "clerp": f'Output "{metric}" (p=1.000)',
                **common,
                "token_prob": 1.0,
                "is_target_logit": True,
                "influence": None,
                "activation": None,
            }
        elif data.get("is_error") or int(data.get("feature", -1)) < 0:
            node = {
                "node_id": f"{layer}_-1_{ctx}",
                "feature": -1,
                "feature_type": "mlp reconstruction error",
                "jsNodeId": f"{layer}_-1-{ctx}",
                "clerp": label or f"{place} error",
                **common,
                "activation": None,
            }
        else:
            feature = int(data["feature"])
            node = {
                "node_id": f"{layer}_{feature}_{ctx}",
                "feature": _cantor(layer, feature),
                "feature_type": "cross layer transcoder",
                "jsNodeId": f"{layer}_{feature}-0",
                "clerp": label or f"{place} #{feature}",
                **common,
            }
        node.update(
            place=place, effect=None if math.isnan(effect) else effect, circuit_node=str(name)
        )
        ids[name] = node["node_id"]
        nodes.append(node)
    if len(set(ids.values())) != len(ids):
        raise ValueError(
            "two circuit nodes map to one Neuronpedia node id (same place/feature/position)"
        )
    links = [
        {"source": ids[u], "target": ids[v], "weight": float(d["weight"])}
        for u, v, d in graph.edges(data=True)
    ]
    description = (
        f"sparse feature circuit: {graph.number_of_nodes()} nodes, {len(links)} edges; "
        "influence is the cumulative share of |effect| (nodes ranked by |effect|)"
    )
    if not real_tokens:
        description += "; prompt tokens unknown, placeholders stand for positions"
    document = {
        "metadata": {
            "slug": slug or path.name.removesuffix(".json"),
            "scan": scan or str(settings.get("model", "unknown")),
            "transcoder_list": _transcoder_list(settings),
            "prompt_tokens": tokens,
            "prompt": prompt if prompt is not None else str(settings.get("prompt", "")),
            "node_threshold": node_threshold,
            "schema_version": 1,
            "info": {
                "description": description,
                "generator": {"name": "sparse-circuits", "version": _package_version()},
            },
            "generation_settings": json_safe(settings),
            "metric_clean": json_safe(graph.graph.get("metric_clean")),
            "metric_patch": json_safe(graph.graph.get("metric_patch")),
        },
        "qParams": {
            "pinnedIds": [],
            "supernodes": [],
            "linkType": "both",
            "clickedId": "",
            "sg_pos": "",
        },
        "nodes": nodes,
        "links": links,
    }
    return write_text_atomic(path, json.dumps(document, indent=1, ensure_ascii=False))
