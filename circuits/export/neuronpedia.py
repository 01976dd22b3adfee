"""Neuronpedia graph JSON export of a circuit (``to_neuronpedia``).

The format circuit-tracer's ``create_graph_files`` writes and its frontend (and Neuronpedia's
graph viewer) reads: top-level ``metadata``, ``qParams``, ``nodes``, ``links``; every field
circuit-tracer writes is present with its meaning.

- ``metadata``: ``slug`` (default: the file name without ``.json``), ``scan`` (the model id;
  default ``settings["model"]``, else ``"unknown"``), ``transcoder_list`` (the dictionaries
  named in ``settings["dictionaries"]``), ``prompt`` (argument, else ``settings["prompt"]``,
  the first clean prompt ``discover`` recorded, else the prompt file's name), ``prompt_tokens``
  (the frontend's columns: with per-position nodes the real tokens of that prompt, argument or
  ``settings["prompt_tokens"]``; with effects summed over positions one placeholder ``"[t]"``
  per position of the longest prompt, ``settings["prompt_length"]``, at least 2; see below why
  one column is not enough), ``node_threshold`` (the viewer hides nodes whose ``influence`` is
  above it; 1.0 shows every node), ``schema_version`` 1 (``feature`` is a Cantor pairing, see
  below), ``info`` (generator name and version, a description),
  ``generation_settings`` (our settings, as JSON) and, beyond circuit-tracer's fields,
  ``metric_clean``/``metric_patch``.
- ``qParams``: the saved view state, empty: ``pinnedIds []``, ``supernodes []``,
  ``linkType "both"``, ``clickedId ""``, ``sg_pos ""``.
- ``nodes``: every circuit node with at least one edge, and the metric (circuit-tracer drops
  unlinked nodes but keeps embeddings and logits; we have no token nodes). Fields:

  ================== ====================================================================
  field              our data
  ================== ====================================================================
  layer              the model layer, as circuit-tracer numbers them: ``L`` for the places
                     of block ``L`` (``attn.L``, ``mlp_in.L``, ``mlp.L``, ``resid.L``),
                     ``"E"`` for ``embed`` (circuit-tracer's embedding row), ``n_layers + 1``
                     for the metric (its logit row)
  probe_location_idx where in the block: ``KINDS`` index (attn 0, mlp_in 1, mlp 2, resid 3;
                     ``embed`` 0), the field the frontend orders a layer's streams by; none
                     for the metric
  ctx_idx            ``position``; with effects summed over positions, the last placeholder
  feature            features: Cantor pairing ``(s + i)(s + i + 1)/2 + i`` of the place's
                     stream index ``s`` (``Place.order``: embed 0, ``attn.L`` 4L+1,
                     ``mlp_in.L`` 4L+2, ``mlp.L`` 4L+3, ``resid.L`` 4L+4) and the feature index
                     ``i``; error nodes ``-1 - s``; the metric 0. circuit-tracer pairs the
                     layer, but its frontend identifies a node by layer, feature and position
                     (hover, click, the 2/3 rule below), so the places of one layer need
                     features of their own
  feature_type       features ``"cross layer transcoder"`` (the viewer's one feature type,
                     whatever the dictionary); error nodes ``"<kind> reconstruction error"``
                     (circuit-tracer's ``"mlp reconstruction error"`` at ``mlp.L``; the
                     viewer treats every type containing ``error`` as an error); the metric
                     ``"logit"``
  node_id            circuit-tracer's pattern ``"{layer}_{index}_{ctx_idx}"``: features their
                     index, errors their (negative) ``feature`` (circuit-tracer's
                     ``"0_{layer}_{ctx_idx}"`` for errors can equal a layer-0 feature's id),
                     the metric index 0; places other than ``mlp.L`` (the one
                     circuit-tracer's transcoders write) add ``"_{kind}"``, so that the places
                     of one layer never share an id
  jsNodeId           features ``"{layer}_{index}-0"``, errors ``"{layer}_{ctx_idx}-0"``, with
                     the same ``"_{kind}"`` tag; the metric ``"L_0-{ctx_idx}"``
  clerp              the node's ``label`` (else ``"<place> #<feature>"`` /
                     ``"<place> error"``); the metric ``Output "<metric>" (p=1.000)``, the form
                     the viewer parses
  influence          circuit-tracer's cumulative influence through the graph
                     (``discovery.influence.cumulative_influence``): the strongest node
                     smallest, the weakest 1.0; ``None`` for the metric
  activation         ``activation`` (``None`` for errors and the metric)
  token_prob         0.0; the metric 1.0 (it is the one target; the viewer weights by it)
  is_target_logit    true for the metric only
  run_idx, reverse_ctx_idx  0
  ================== ====================================================================

  plus, beyond circuit-tracer's fields, ``place``, ``effect`` and ``circuit_node`` (our id).
- ``links``: one per circuit edge, ``source`` and ``target`` node ids (upstream to
  downstream, as in circuit-tracer) and ``weight`` our edge weight.

What the frontend does with a file (circuit-tracer's ``util-cg.js``, ``formatData``), which
every node written here survives (``tests/test_export.py`` replays it): it keeps nodes whose
``influence`` is at most ``node_threshold`` (and every embedding and logit); it groups nodes by
``"{layer}_{feature}_{ctx_idx}"`` (error nodes also by their distance from the last token) and
deletes every group larger than 2/3 of ``prompt_tokens`` (so one column would hide every
node); it keeps links whose two ends are kept; rows are ``layer + 1`` (``E`` row 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import networkx as nx

from sparse_circuits.circuits.discovery.influence import cumulative_influence
from sparse_circuits.circuits.export.common import (
    is_metric,
    json_safe,
    n_layers_of,
    node_positions,
    number,
)
from sparse_circuits.circuits.model.places import KINDS, parse_place
from sparse_circuits.files import write_text_atomic

__all__ = ["to_neuronpedia", "model_layer"]

MIN_COLUMNS = 2
"""Placeholder columns at least: the frontend deletes groups of nodes larger than 2/3 of the
columns, so with one column even a lone node goes."""


def model_layer(place: str, n_layers: int) -> str:
    """circuit-tracer's layer of a place: ``"L"`` for block ``L``'s places, ``"E"`` for
    ``embed``, ``n_layers + 1`` for the metric."""
    if place == "metric":
        return str(n_layers + 1)
    parsed = parse_place(place, n_layers)
    return "E" if parsed.kind == "embed" else str(parsed.layer)


def _cantor(layer: int, index: int) -> int:
    return (layer + index) * (layer + index + 1) // 2 + index


def _package_version() -> str:
    try:
        return importlib_metadata.version("sparse-circuits")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _prompt_tokens(graph: nx.DiGraph, given: list[str] | None) -> tuple[list[str], bool]:
    """The frontend's columns, and whether they are real tokens (not placeholders)."""
    settings = graph.graph.get("settings") or {}
    positions = node_positions(graph)
    tokens = given if given is not None else settings.get("prompt_tokens")
    if positions and tokens:
        return [str(t) for t in tokens], True
    length = settings.get("prompt_length") or (len(tokens) if tokens else 0)
    length = max(int(length), positions[-1] + 1 if positions else 0, MIN_COLUMNS)
    return [f"[{t}]" for t in range(length)], False


def _prompt(settings: Mapping[str, Any], given: str | None) -> str:
    if given is not None:
        return given
    if settings.get("prompt"):
        return str(settings["prompt"])
    prompts = settings.get("prompts")
    return f"prompts of {Path(str(prompts)).name}" if prompts else ""


def _transcoder_list(settings: Mapping[str, Any]) -> list[str]:
    named = settings.get("dictionaries")
    if isinstance(named, Mapping):
        return [str(v) for v in named.values()]
    if isinstance(named, list | tuple):
        return [str(v) for v in named]
    return [] if named is None else [str(named)]


def _node(data: Mapping[str, Any], *, n_layers: int, ctx: int, settings: Mapping) -> dict:
    """One node's fields but ``influence`` (module docstring)."""
    place = str(data.get("place", "metric"))
    layer = model_layer(place, n_layers)
    activation = number(data.get("activation"))
    label = str(data.get("label") or "")
    common = {
        "layer": layer,
        "ctx_idx": ctx,
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "activation": None if math.isnan(activation) else activation,
    }
    if is_metric(data):
        metric = label or str(settings.get("metric", "metric"))
        return {
            "node_id": f"{layer}_0_{ctx}",
            "feature": 0,
            "feature_type": "logit",
            "jsNodeId": f"L_0-{ctx}",
            "clerp": f'Output "{metric}" (p=1.000)',
            **common,
            "token_prob": 1.0,
            "is_target_logit": True,
            "activation": None,
        }
    parsed = parse_place(place, n_layers)
    kind = parsed.kind
    tag = "" if kind == "mlp" else f"_{kind}"
    location = KINDS.index(kind) if kind in KINDS else 0
    if data.get("is_error") or int(data.get("feature", -1)) < 0:
        return {
            "node_id": f"{layer}_{-1 - parsed.order}_{ctx}{tag}",
            "feature": -1 - parsed.order,
            "feature_type": f"{kind} reconstruction error",
            "jsNodeId": f"{layer}_{ctx}-0{tag}",
            "clerp": label or f"{place} error",
            "probe_location_idx": location,
            **common,
            "activation": None,
        }
    feature = int(data["feature"])
    return {
        "node_id": f"{layer}_{feature}_{ctx}{tag}",
        "feature": _cantor(parsed.order, feature),
        "feature_type": "cross layer transcoder",
        "jsNodeId": f"{layer}_{feature}-0{tag}",
        "clerp": label or f"{place} #{feature}",
        "probe_location_idx": location,
        **common,
    }


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
    """Write the circuit as a Neuronpedia / circuit-tracer graph JSON, atomically (fields in
    the module docstring). Nodes without edges are left out, but for the metric."""
    path = Path(path)
    settings = graph.graph.get("settings") or {}
    n_layers = n_layers_of(graph)
    tokens, real_tokens = _prompt_tokens(graph, prompt_tokens)
    influence = cumulative_influence(graph)
    linked = {n for edge in graph.edges for n in edge}
    nodes, ids = [], {}
    for name, data in graph.nodes(data=True):
        if name not in linked and not is_metric(data):
            continue
        position = int(data.get("position", -1))
        ctx = position if position >= 0 else len(tokens) - 1
        node = _node(data, n_layers=n_layers, ctx=ctx, settings=settings)
        node["influence"] = None if is_metric(data) else influence.get(name)
        effect = number(data.get("effect"))
        node.update(
            place=str(data.get("place", "metric")),
            effect=None if math.isnan(effect) else effect,
            circuit_node=str(name),
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
        f"sparse feature circuit: {len(nodes)} of its {graph.number_of_nodes()} nodes "
        f"(those with edges, and the metric), {len(links)} edges; influence is "
        "circuit-tracer's cumulative influence through the graph"
    )
    if not real_tokens:
        description += "; effects summed over positions: placeholders stand for positions"
    document = {
        "metadata": {
            "slug": slug or path.name.removesuffix(".json"),
            "scan": scan or str(settings.get("model", "unknown")),
            "transcoder_list": _transcoder_list(settings),
            "prompt_tokens": tokens,
            "prompt": _prompt(settings, prompt),
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
