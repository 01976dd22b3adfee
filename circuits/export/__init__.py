"""Circuits out of this package: GraphML, a Neuronpedia graph JSON, an interactive HTML figure.

Every writer takes the circuit graph of ``circuits.graph`` (its meaning is defined there) and
writes atomically (``dictionaries.files.atomic_path``): a reader sees the old file or the whole
new one, never a part; a missing output folder is a ``FileNotFoundError`` naming it.

GraphML (``to_graphml``)
------------------------
For Gephi, Cytoscape and ``networkx.read_graphml``. Every value is a GraphML scalar: ``boolean``
(written ``true``/``false``), ``long``, ``double`` or ``string``; one type per attribute name
(integers mixed with floats become ``double``; anything else mixed becomes ``string``). A
missing value, ``None``, NaN or an infinity is left out of that node's (edge's) data, so an
error node has no ``activation``. Lists are joined with `` | `` (a top-context dictionary as
``text (activation)``); dictionaries become JSON text. The graph's ``settings`` are flattened to
string attributes ``settings.<key>[.<subkey>...]`` (lists and other non-scalars as JSON text);
the other graph attributes (``metric_clean``, ``metric_patch``) stay numbers. Characters XML 1.0
cannot hold (control characters) become U+FFFD.

Neuronpedia graph JSON (``to_neuronpedia``)
-------------------------------------------
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

HTML (``to_html``)
------------------
A self-contained plotly figure (plotly.js inlined). Rows bottom to top are the circuit's places
in forward order (embed, then per layer attn, mlp_in, mlp, resid), the metric at the top. With
per-position nodes (``position >= 0``) x is the position (nodes sharing a place and position
spread around it); with summed nodes each place's nodes spread left to right by effect, most
negative left. Colour is the effect's sign (blue positive, red negative), size grows with
|effect|; error nodes are squares, features circles, the metric a diamond. Edges are drawn as a
few line traces (sign x |weight| bucket), so a thousand edges stay fast; hovering a node shows
its id, place, effect, activation and label (top activating contexts when labelled), hovering
an edge's midpoint its ends and weight. ``render_png`` screenshots such a file with headless
Chromium.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import plotly.graph_objects as go
import torch

from sparse_circuits.circuits.model.places import KINDS, parse_place
from sparse_circuits.files import atomic_path, write_text_atomic

__all__ = [
    "FORMATS",
    "CHROMIUM",
    "RenderError",
    "export",
    "to_graphml",
    "to_neuronpedia",
    "to_html",
    "render_png",
    "place_stream_index",
]

FORMATS = ("graphml", "neuronpedia", "html")
CHROMIUM = Path("/usr/bin/chromium")

POSITIVE = "#2166ac"
NEGATIVE = "#b2182b"
NEUTRAL = "#8c8c8c"


class RenderError(RuntimeError):
    """A PNG that could not be rendered (no Chromium, or Chromium failed); says why."""


def export(graph: nx.DiGraph, path: str | Path, fmt: str, **options: Any) -> Path:
    """Write ``graph`` as ``fmt`` (one of ``FORMATS``); ``options`` go to the writer."""
    writers = {"graphml": to_graphml, "neuronpedia": to_neuronpedia, "html": to_html}
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return writers[fmt](graph, path, **options)


# --------------------------------------------------------------------------- shared helpers


def _n_layers(graph: nx.DiGraph) -> int:
    """The model's layer count: the metric node's ``layer``, else one past the deepest node."""
    for _, data in graph.nodes(data=True):
        if data.get("kind") == "metric" or data.get("place") == "metric":
            return int(data["layer"])
    layers = [int(d.get("layer", -1)) for _, d in graph.nodes(data=True)]
    return max(layers, default=-1) + 1


def place_stream_index(place: str, n_layers: int) -> int:
    """A place's index in the forward pass: ``embed`` 0, then ``attn.L`` 4L+1, ``mlp_in.L``
    4L+2, ``mlp.L`` 4L+3, ``resid.L`` 4L+4; ``metric`` 4 * n_layers + 1."""
    if place == "metric":
        return len(KINDS) * n_layers + 1
    return parse_place(place, n_layers).order


def _plain(value: Any) -> Any:
    """Python scalars for numpy and torch scalars; everything else unchanged."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_metric(data: Mapping[str, Any]) -> bool:
    return data.get("kind") == "metric" or data.get("place") == "metric"


def _number(value: Any) -> float:
    """A float, NaN for anything missing or not a number."""
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)


def _strength(data: Mapping[str, Any]) -> float:
    """|effect|, 0 when missing."""
    effect = _number(data.get("effect"))
    return 0.0 if math.isnan(effect) else abs(effect)


def _json_safe(value: Any) -> Any:
    """JSON-ready: NaN/inf -> None, tuples -> lists, tensors and numpy -> Python."""
    value = _plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return _json_safe(value.tolist())
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


# --------------------------------------------------------------------------- GraphML

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def _join_item(item: Any) -> str:
    item = _plain(item)
    if isinstance(item, Mapping):
        if "text" in item:
            activation = _number(item.get("activation"))
            suffix = "" if math.isnan(activation) else f" ({activation:.4g})"
            return f"{item['text']}{suffix}"
        return json.dumps(_json_safe(item), sort_keys=True, ensure_ascii=False)
    return str(item)


def _graphml_scalar(value: Any) -> bool | int | float | str | None:
    """A GraphML-legal scalar for ``value``, or ``None`` to leave it out."""
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return " | ".join(_join_item(item) for item in value)
    if isinstance(value, Mapping):
        return json.dumps(_json_safe(value), sort_keys=True, ensure_ascii=False)
    return str(value)


def _flatten_settings(value: Any, prefix: str) -> dict[str, str]:
    """Nested settings as ``{"settings.a.b": "text"}``: scalars as text, lists as JSON."""
    value = _plain(value)
    if isinstance(value, Mapping):
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(_flatten_settings(inner, f"{prefix}.{key}"))
        return flat
    if value is None:
        return {}
    if isinstance(value, float) and not math.isfinite(value):
        return {}
    if isinstance(value, bool):
        return {prefix: "true" if value else "false"}
    if isinstance(value, str | int | float):
        return {prefix: str(value)}
    return {prefix: json.dumps(_json_safe(value), ensure_ascii=False)}


def _unify(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Give each attribute one GraphML type across ``rows`` (converting values in place);
    returns name -> GraphML type."""
    types: dict[str, str] = {}
    names = {name for row in rows for name in row}
    for name in sorted(names):
        values = [row[name] for row in rows if name in row]
        if all(isinstance(v, bool) for v in values):
            types[name] = "boolean"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            types[name] = "long"
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            types[name] = "double"
            for row in rows:
                if name in row:
                    row[name] = float(row[name])
        else:
            types[name] = "string"
            for row in rows:
                if name in row:
                    row[name] = _graphml_text(row[name])
    return types


def _graphml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return _xml_text(str(value))


def _scalar_rows(items: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for data in items:
        row = {}
        for name, value in data.items():
            scalar = _graphml_scalar(value)
            if scalar is not None:
                row[str(name)] = scalar
        rows.append(row)
    return rows


def to_graphml(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write the circuit as GraphML (directed), atomically. See the module docstring for how
    values are made GraphML scalars; ``networkx.read_graphml`` reads it back."""
    path = Path(path)
    graph_row: dict[str, Any] = dict(
        _flatten_settings(graph.graph.get("settings") or {}, "settings")
    )
    for name, value in graph.graph.items():
        if name == "settings":
            continue
        scalar = _graphml_scalar(value)
        if scalar is not None:
            graph_row[str(name)] = scalar
    node_ids = list(graph.nodes)
    node_rows = _scalar_rows([graph.nodes[n] for n in node_ids])
    edge_list = list(graph.edges)
    edge_rows = _scalar_rows([graph.edges[e] for e in edge_list])

    root = ET.Element(
        "graphml",
        {
            "xmlns": "http://graphml.graphdrawing.org/xmlns",
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:schemaLocation": "http://graphml.graphdrawing.org/xmlns "
            "http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd",
        },
    )
    key_ids: dict[tuple[str, str], str] = {}
    for scope, rows in (("graph", [graph_row]), ("node", node_rows), ("edge", edge_rows)):
        for name, kind in _unify(rows).items():
            key_id = f"d{len(key_ids)}"
            key_ids[scope, name] = key_id
            ET.SubElement(
                root,
                "key",
                {"id": key_id, "for": scope, "attr.name": _xml_text(name), "attr.type": kind},
            )
    body = ET.SubElement(root, "graph", {"id": "circuit", "edgedefault": "directed"})

    def add_data(parent: ET.Element, scope: str, row: dict[str, Any]) -> None:
        for name, value in row.items():
            ET.SubElement(parent, "data", {"key": key_ids[scope, name]}).text = _graphml_text(value)

    add_data(body, "graph", graph_row)
    for node, row in zip(node_ids, node_rows, strict=True):
        add_data(ET.SubElement(body, "node", {"id": _xml_text(str(node))}), "node", row)
    for (u, v), row in zip(edge_list, edge_rows, strict=True):
        element = ET.SubElement(
            body, "edge", {"source": _xml_text(str(u)), "target": _xml_text(str(v))}
        )
        add_data(element, "edge", row)
    ET.indent(root)
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    return path


# --------------------------------------------------------------------------- Neuronpedia


def _cantor(layer: int, index: int) -> int:
    return (layer + index) * (layer + index + 1) // 2 + index


def _package_version() -> str:
    try:
        return importlib_metadata.version("sparse-circuits")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _positions(graph: nx.DiGraph) -> list[int]:
    return sorted(
        {
            int(d["position"])
            for _, d in graph.nodes(data=True)
            if not _is_metric(d) and int(d.get("position", -1)) >= 0
        }
    )


def _prompt_tokens(graph: nx.DiGraph, given: list[str] | None) -> tuple[list[str], bool]:
    """The prompt's tokens, and whether they are real (not placeholders)."""
    settings = graph.graph.get("settings") or {}
    tokens = given if given is not None else settings.get("prompt_tokens")
    if tokens:
        return [str(t) for t in tokens], True
    positions = _positions(graph)
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
        n: abs(_number(d.get("effect")))
        for n, d in graph.nodes(data=True)
        if not _is_metric(d) and not math.isnan(_number(d.get("effect")))
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
    n_layers = _n_layers(graph)
    tokens, real_tokens = _prompt_tokens(graph, prompt_tokens)
    last = len(tokens) - 1
    influence = _influence(graph)
    nodes, ids = [], {}
    for name, data in graph.nodes(data=True):
        place = str(data.get("place", "metric"))
        layer = place_stream_index(place, n_layers)
        position = int(data.get("position", -1))
        ctx = position if position >= 0 else last
        activation = _number(data.get("activation"))
        effect = _number(data.get("effect"))
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
        if _is_metric(data):
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
            "generation_settings": _json_safe(settings),
            "metric_clean": _json_safe(graph.graph.get("metric_clean")),
            "metric_patch": _json_safe(graph.graph.get("metric_patch")),
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


# --------------------------------------------------------------------------- HTML


def _layout(graph: nx.DiGraph) -> tuple[dict[str, tuple[float, float]], list[str], bool]:
    """Node -> (x, y); row names bottom to top; whether x is the position."""
    n_layers = _n_layers(graph)
    places = {d.get("place") for _, d in graph.nodes(data=True) if not _is_metric(d)}
    rows = sorted(places, key=lambda p: place_stream_index(p, n_layers))
    row_of = {place: i for i, place in enumerate(rows)}
    positional = bool(_positions(graph))
    groups: dict[tuple, list[str]] = {}
    for name, data in graph.nodes(data=True):
        if _is_metric(data):
            continue
        key = (data["place"], int(data.get("position", -1))) if positional else (data["place"],)
        groups.setdefault(key, []).append(name)
    coords: dict[str, tuple[float, float]] = {}

    def effect_of(n: str) -> float:
        e = _number(graph.nodes[n].get("effect"))
        return 0.0 if math.isnan(e) else e

    for key, members in groups.items():
        members.sort(key=lambda n: (effect_of(n), str(n)))
        count = len(members)
        y = float(row_of[key[0]])
        for i, name in enumerate(members):
            if positional:
                x = max(key[1], 0) + (i - (count - 1) / 2) * (0.8 / count)
            else:
                x = i - (count - 1) / 2
            coords[name] = (x, y)
    positions = _positions(graph)
    metric_x = float(positions[-1]) if positional else 0.0
    for name, data in graph.nodes(data=True):
        if _is_metric(data):
            coords[name] = (metric_x, float(len(rows)))
    return coords, rows + ["metric"], positional


def _hover(name: str, data: Mapping[str, Any]) -> str:
    parts = [f"<b>{html.escape(str(name))}</b>"]
    if not _is_metric(data):
        what = "error" if data.get("is_error") else f"feature {data.get('feature')}"
        where = int(data.get("position", -1))
        parts.append(
            f"{html.escape(str(data.get('place')))} · {what}"
            + (f" · position {where}" if where >= 0 else "")
        )
    effect, activation = _number(data.get("effect")), _number(data.get("activation"))
    parts.append(f"effect {effect:+.4g}")
    if not math.isnan(activation):
        parts.append(f"activation {activation:.4g}")
    contexts = data.get("top_contexts")
    if isinstance(contexts, list | tuple) and contexts:
        parts.append("top contexts:")
        for item in contexts:
            parts.append("&nbsp;&nbsp;" + html.escape(_join_item(item)))
    elif data.get("label"):
        parts.append(html.escape(str(data["label"])))
    return "<br>".join(parts)


def _edge_traces(graph: nx.DiGraph, coords: dict[str, tuple[float, float]]) -> list[go.Scatter]:
    """Line traces per (sign, |weight| bucket) plus one trace of hoverable midpoints."""
    edges = [(u, v, _number(d.get("weight"))) for u, v, d in graph.edges(data=True)]
    edges = [(u, v, w) for u, v, w in edges if not math.isnan(w)]
    if not edges:
        return []
    biggest = max(abs(w) for *_, w in edges) or 1.0
    widths = (0.75, 1.75, 3.0, 5.0)
    buckets: dict[tuple[bool, int], list[tuple[str, str]]] = {}
    for u, v, w in edges:
        bucket = min(int(abs(w) / biggest * len(widths)), len(widths) - 1)
        buckets.setdefault((w >= 0, bucket), []).append((u, v))
    traces = []
    in_legend: set[bool] = set()
    for (positive, bucket), pairs in sorted(
        buckets.items(), key=lambda item: (not item[0][0], item[0][1])
    ):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for u, v in pairs:
            xs += [coords[u][0], coords[v][0], None]
            ys += [coords[u][1], coords[v][1], None]
        low, high = bucket / len(widths) * biggest, (bucket + 1) / len(widths) * biggest
        sign = "+" if positive else "−"
        colour = "rgba(33,102,172,0.45)" if positive else "rgba(178,24,43,0.45)"
        traces.append(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"width": widths[bucket], "color": colour},
                hoverinfo="skip",
                name=f"{'positive' if positive else 'negative'} edges",
                legendgroup=f"edges{sign}",
                showlegend=positive not in in_legend,
                meta=f"|weight| {low:.3g} to {high:.3g}",
            )
        )
        in_legend.add(positive)
    traces.append(
        go.Scatter(
            x=[(coords[u][0] + coords[v][0]) / 2 for u, v, _ in edges],
            y=[(coords[u][1] + coords[v][1]) / 2 for u, v, _ in edges],
            mode="markers",
            marker={"size": 7, "opacity": 0},
            hovertext=[
                f"{html.escape(str(u))} → {html.escape(str(v))}<br>weight {w:+.4g}"
                for u, v, w in edges
            ],
            hoverinfo="text",
            name="edge weights (hover)",
            showlegend=False,
        )
    )
    return traces


def _node_traces(graph: nx.DiGraph, coords: dict[str, tuple[float, float]]) -> list[go.Scatter]:
    effects = [
        abs(_number(d.get("effect")))
        for _, d in graph.nodes(data=True)
        if not _is_metric(d) and not math.isnan(_number(d.get("effect")))
    ]
    biggest = max(effects, default=0.0) or 1.0
    groups: dict[str, list[str]] = {"features": [], "errors": [], "metric": []}
    for name, data in graph.nodes(data=True):
        kind = "metric" if _is_metric(data) else "errors" if data.get("is_error") else "features"
        groups[kind].append(name)
    symbols = {"features": "circle", "errors": "square", "metric": "diamond"}
    traces = []
    for kind, names in groups.items():
        if not names:
            continue
        colours, sizes = [], []
        for name in names:
            effect = _number(graph.nodes[name].get("effect"))
            if kind == "metric":
                colours.append("#303030")
                sizes.append(22.0)
                continue
            colours.append(
                NEUTRAL
                if math.isnan(effect) or effect == 0
                else POSITIVE
                if effect > 0
                else NEGATIVE
            )
            magnitude = 0.0 if math.isnan(effect) else abs(effect) / biggest
            sizes.append(7.0 + 25.0 * math.sqrt(magnitude))
        traces.append(
            go.Scatter(
                x=[coords[n][0] for n in names],
                y=[coords[n][1] for n in names],
                ids=[str(n) for n in names],
                mode="markers+text" if kind == "metric" else "markers",
                text=["metric"] * len(names) if kind == "metric" else None,
                textposition="top center",
                marker={
                    "symbol": symbols[kind],
                    "color": colours,
                    "size": sizes,
                    "line": {"width": 1, "color": "#202020"},
                    "opacity": 0.9,
                },
                hovertext=[_hover(n, graph.nodes[n]) for n in names],
                hoverinfo="text",
                name=kind,
            )
        )
    return traces


def _figure(graph: nx.DiGraph, title: str | None) -> go.Figure:
    coords, rows, positional = _layout(graph)
    settings = graph.graph.get("settings") or {}
    figure = go.Figure(_edge_traces(graph, coords) + _node_traces(graph, coords))
    if title is None:
        title = (
            f"circuit: {graph.number_of_nodes() - 1} nodes, {graph.number_of_edges()} edges"
            f" · metric {settings.get('metric', 'metric')}"
        )
        clean, patch = graph.graph.get("metric_clean"), graph.graph.get("metric_patch")
        if isinstance(clean, int | float) and isinstance(patch, int | float):
            title += f" (clean {clean:.4g}, patch {patch:.4g})"
    xaxis: dict[str, Any] = {"zeroline": False, "showgrid": positional}
    if positional:
        positions = _positions(graph)
        tokens = settings.get("prompt_tokens")
        ticks = list(range(positions[-1] + 1))
        labels = (
            [f"{t}: {tokens[t]}" for t in ticks]
            if isinstance(tokens, list) and len(tokens) > positions[-1]
            else [str(t) for t in ticks]
        )
        xaxis.update(title="position", tickvals=ticks, ticktext=labels)
    else:
        xaxis.update(
            title="nodes of each place, by effect (negative left, positive right)",
            showticklabels=False,
        )
    figure.update_layout(
        title=title,
        xaxis=xaxis,
        yaxis={
            "tickvals": list(range(len(rows))),
            "ticktext": rows,
            "zeroline": False,
            "range": [-0.6, len(rows) - 0.4],
        },
        hovermode="closest",
        plot_bgcolor="white",
        height=max(500, 80 * len(rows) + 180),
        legend={"itemsizing": "constant"},
        margin={"l": 80, "r": 30, "t": 60, "b": 60},
    )
    return figure


def _node_table(graph: nx.DiGraph) -> str:
    """A plain HTML table of the nodes (searchable in the page, readable without JavaScript)."""
    head = "".join(
        f"<th>{h}</th>"
        for h in ("node", "place", "feature", "position", "effect", "activation", "label")
    )
    rows = []
    ordered = sorted(graph.nodes(data=True), key=lambda item: -_strength(item[1]))
    for name, data in ordered:
        effect, activation = _number(data.get("effect")), _number(data.get("activation"))
        cells = (
            str(name),
            str(data.get("place", "")),
            "error" if data.get("is_error") else str(data.get("feature", "")),
            str(data.get("position", "")),
            "" if math.isnan(effect) else f"{effect:+.4g}",
            "" if math.isnan(activation) else f"{activation:.4g}",
            str(data.get("label") or ""),
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        f"<details><summary>{graph.number_of_nodes()} nodes</summary>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
    )


_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 0 1em; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
</style>
</head>
<body>
{figure}
{table}
</body>
</html>
"""


def to_html(
    graph: nx.DiGraph, path: str | Path, *, title: str | None = None, plotly_js: str | None = None
) -> Path:
    """Write an interactive, self-contained plotly figure of the circuit (plotly.js inlined)
    and a table of its nodes, atomically. ``plotly_js``, a URL relative to the page ending in
    ``.js``, loads one shared copy of plotly.js instead (a site of many figures)."""
    figure = _figure(graph, title)
    div = figure.to_html(include_plotlyjs=plotly_js or True, full_html=False)
    page = _PAGE.format(
        title=html.escape(str(figure.layout.title.text or "circuit")),
        figure=div,
        table=_node_table(graph),
    )
    return write_text_atomic(path, page)


def render_png(
    html_path: str | Path,
    png_path: str | Path,
    *,
    chromium: str | Path = CHROMIUM,
    window_size: tuple[int, int] = (1400, 1000),
    timeout: float = 120.0,
) -> Path:
    """Screenshot ``html_path`` (e.g. from ``to_html``) into ``png_path`` with headless
    Chromium, atomically. ``RenderError`` if Chromium is missing or fails."""
    html_path, png_path = Path(html_path), Path(png_path)
    chromium = Path(chromium)
    if not chromium.is_file():
        raise RenderError(
            f"cannot render {png_path}: no Chromium at {chromium} "
            "(install it, e.g. `apt-get install chromium`, or pass chromium=...)"
        )
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path}: HTML file not found")
    with tempfile.TemporaryDirectory(prefix="sparse-circuits-chromium-") as scratch:
        shot = Path(scratch) / "screenshot.png"
        profile = Path(scratch) / "profile"
        command = [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            f"--window-size={window_size[0]},{window_size[1]}",
            html_path.resolve().as_uri(),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RenderError(f"chromium took longer than {timeout} s on {html_path}") from None
        if result.returncode != 0 or not shot.is_file() or shot.stat().st_size == 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-5:])
            raise RenderError(
                f"chromium failed to render {html_path} (exit {result.returncode}): {tail}"
            )
        with atomic_path(png_path) as tmp:
            shutil.copyfile(shot, tmp)
    return png_path
