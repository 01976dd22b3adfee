"""HTML export of a circuit (``to_html``): a self-contained plotly figure (plotly.js inlined)
that a person can read, and a table of every node.

What the figure shows (``figure_circuit``):

1. By default the pruned circuit: the nodes with a path to the metric along the circuit's
   edges (which passed the edge threshold), at most ``max_nodes`` (60): the strongest by
   influence on the metric through the graph (``discovery.influence.node_influence``), then
   again only those that still reach the metric. A circuit without any such path shows its
   ``max_nodes`` largest |effect| nodes instead, and says so in the title. ``pruned=False``
   draws every node.
2. Supernodes (``discovery.supernodes``, marked at discovery by decoder cosine): the members
   of one are drawn as one hexagon (effects summed, edges summed), listed in the node table
   under it.

How it is drawn: rows bottom to top are the circuit's places in forward order (embed, then per
layer attn, mlp_in, mlp, resid), the metric at the top. With per-position nodes
(``position >= 0``) x is the position and the prompt's tokens (``settings["prompt_tokens"]``)
are written under the axis; with summed nodes each place's nodes spread left to right by
effect, most negative left. Every feature carries a visible short label from its top
activating tokens (``labels.short_label``), the full contexts on hover. Colour is the
effect's sign (blue positive, red negative), size grows with |effect|; features are circles,
error nodes grey squares with a border of their sign's colour (sized by effect too), the
metric a black diamond. Edges are line traces by sign and |weight| bucket, width by |weight|,
colour by sign (a few traces, so a thousand edges stay fast); hovering an edge's midpoint
shows its ends and weight. ``render_png`` (``export.png``) screenshots the file with headless
Chromium.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import plotly.graph_objects as go

from sparse_circuits.circuits.discovery.influence import node_influence
from sparse_circuits.circuits.discovery.labels import short_label
from sparse_circuits.circuits.export.common import (
    is_metric,
    item_text,
    n_layers_of,
    node_positions,
    number,
)
from sparse_circuits.circuits.model.places import parse_place
from sparse_circuits.files import write_text_atomic

__all__ = ["MAX_NODES", "figure_circuit", "to_html"]

MAX_NODES = 60
"""Nodes a figure shows at most by default: a few dozen labels stay readable on one screen."""

POSITIVE = "#2166ac"
NEGATIVE = "#b2182b"
NEUTRAL = "#8c8c8c"
ERROR_FILL = "#d0d0d0"


def _effect(data: Mapping[str, Any]) -> float:
    """The effect, 0 when missing."""
    effect = number(data.get("effect"))
    return 0.0 if math.isnan(effect) else effect


def _sign_colour(effect: float) -> str:
    return NEUTRAL if effect == 0 else POSITIVE if effect > 0 else NEGATIVE


def figure_circuit(
    graph: nx.DiGraph, *, max_nodes: int | None = MAX_NODES, pruned: bool = True
) -> tuple[nx.DiGraph, str]:
    """Step 1: the subgraph the figure draws (with the metric), and a note on what it is."""
    if max_nodes is not None and max_nodes < 1:
        raise ValueError(f"max_nodes must be at least 1, got {max_nodes}")
    metric = next((n for n, d in graph.nodes(data=True) if is_metric(d)), None)
    others = [n for n, d in graph.nodes(data=True) if not is_metric(d)]
    limit = len(others) if max_nodes is None else max_nodes
    if not pruned:
        strongest = sorted(others, key=lambda n: -abs(_effect(graph.nodes[n])))[:limit]
        note = "every node" if len(strongest) == len(others) else "the strongest by |effect|"
        return graph.subgraph(strongest + ([metric] if metric else [])).copy(), note
    reaching = set(nx.ancestors(graph, metric)) if metric is not None else set()
    if not reaching:
        strongest = sorted(others, key=lambda n: -abs(_effect(graph.nodes[n])))[:limit]
        note = "no edge path reaches the metric: the strongest by |effect|"
        return graph.subgraph(strongest + ([metric] if metric else [])).copy(), note
    influence = node_influence(graph)
    kept = sorted(reaching, key=lambda n: (-influence[n], -abs(_effect(graph.nodes[n]))))
    kept = set(kept[:limit])
    while True:  # dropping weak nodes may cut a stronger node's only path
        still = set(nx.ancestors(graph.subgraph(kept | {metric}), metric))
        if still == kept:
            break
        kept = still
    note = "those with a path to the metric"
    if len(kept) < len(reaching):
        note += f", the {len(kept)} most influential"
    return graph.subgraph([n for n in graph if n in kept or n == metric]).copy(), note


def _collapse_supernodes(graph: nx.DiGraph) -> nx.DiGraph:
    """Step 2: each supernode's members as one node (id the supernode's name, effect and
    activation summed, ``members`` their ids); edges between groups summed."""
    group = {n: str(d.get("supernode") or n) for n, d in graph.nodes(data=True)}
    collapsed = nx.DiGraph(**graph.graph)
    for name, data in graph.nodes(data=True):
        key = group[name]
        if key == name:
            collapsed.add_node(name, **data)
            continue
        if key not in collapsed:
            blank = {"effect": 0.0, "activation": float("nan"), "label": "", "feature": -1}
            collapsed.add_node(key, **{**data, **blank, "members": [], "top_contexts": []})
        node = collapsed.nodes[key]
        node["effect"] += _effect(data)
        node["members"].append(name)
        node["top_contexts"] += list(data.get("top_contexts") or [])
    for node in collapsed.nodes.values():
        if node.get("members"):
            node["top_contexts"].sort(key=lambda hit: -number(hit.get("activation")))
            node["label"] = f"{len(node['members'])} features: " + ", ".join(node["members"])
    for u, v, weight in graph.edges(data="weight"):
        a, b = group[u], group[v]
        if a != b:
            previous = collapsed.edges[a, b]["weight"] if collapsed.has_edge(a, b) else 0.0
            collapsed.add_edge(a, b, weight=previous + number(weight))
    return collapsed


def _layout(graph: nx.DiGraph) -> tuple[dict[str, tuple[float, float]], list[str], bool]:
    """Node -> (x, y); row names bottom to top; whether x is the position."""
    n_layers = n_layers_of(graph)
    places = {d.get("place") for _, d in graph.nodes(data=True) if not is_metric(d)}
    rows = sorted(places, key=lambda p: parse_place(p, n_layers).order)
    row_of = {place: i for i, place in enumerate(rows)}
    positional = bool(node_positions(graph))
    groups: dict[tuple, list[str]] = {}
    for name, data in graph.nodes(data=True):
        if is_metric(data):
            continue
        key = (data["place"], int(data.get("position", -1))) if positional else (data["place"],)
        groups.setdefault(key, []).append(name)
    coords: dict[str, tuple[float, float]] = {}
    for key, members in groups.items():
        members.sort(key=lambda n: (_effect(graph.nodes[n]), str(n)))
        count = len(members)
        y = float(row_of[key[0]])
        for i, name in enumerate(members):
            if positional:
                x = max(key[1], 0) + (i - (count - 1) / 2) * (0.8 / count)
            else:
                x = i - (count - 1) / 2
            coords[name] = (x, y)
    positions = node_positions(graph)
    metric_x = float(positions[-1]) if positional else 0.0
    for name, data in graph.nodes(data=True):
        if is_metric(data):
            coords[name] = (metric_x, float(len(rows)))
    return coords, rows + ["metric"], positional


def _hover(name: str, data: Mapping[str, Any]) -> str:
    parts = [f"<b>{html.escape(str(name))}</b>"]
    if not is_metric(data):
        what = (
            f"supernode of {len(data['members'])}"
            if data.get("members")
            else "error"
            if data.get("is_error")
            else f"feature {data.get('feature')}"
        )
        where = int(data.get("position", -1))
        parts.append(
            f"{html.escape(str(data.get('place')))} · {what}"
            + (f" · position {where}" if where >= 0 else "")
        )
    effect, activation = number(data.get("effect")), number(data.get("activation"))
    parts.append(f"effect {effect:+.4g}")
    if not math.isnan(activation):
        parts.append(f"activation {activation:.4g}")
    contexts = data.get("top_contexts")
    if isinstance(contexts, list | tuple) and contexts:
        parts.append("top contexts:")
        for item in contexts[:8]:
            parts.append("&nbsp;&nbsp;" + html.escape(item_text(item)))
    elif data.get("label"):
        parts.append(html.escape(str(data["label"])))
    return "<br>".join(parts)


def _edge_traces(graph: nx.DiGraph, coords: dict[str, tuple[float, float]]) -> list[go.Scatter]:
    """Line traces per (sign, |weight| bucket) plus one trace of hoverable midpoints."""
    edges = [(u, v, number(d.get("weight"))) for u, v, d in graph.edges(data=True)]
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
        colour = "rgba(33,102,172,0.5)" if positive else "rgba(178,24,43,0.5)"
        traces.append(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"width": widths[bucket], "color": colour},
                hoverinfo="skip",
                name=f"{'positive' if positive else 'negative'} edges (width: |weight|)",
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
    """One trace each for features (and supernodes), error nodes and the metric, every
    marker with its visible label."""
    biggest = max(
        (abs(_effect(d)) for _, d in graph.nodes(data=True) if not is_metric(d)), default=0.0
    )
    biggest = biggest or 1.0
    kinds: dict[str, list[str]] = {"features": [], "error nodes": [], "metric": []}
    for name, data in graph.nodes(data=True):
        kind = (
            "metric" if is_metric(data) else "error nodes" if data.get("is_error") else "features"
        )
        kinds[kind].append(name)
    traces = []
    for kind, names in kinds.items():
        if not names:
            continue
        datas = [graph.nodes[n] for n in names]
        effects = [_effect(d) for d in datas]
        sizes = [10.0 + 26.0 * math.sqrt(abs(e) / biggest) for e in effects]
        if kind == "metric":
            marker = {"symbol": "diamond", "color": "#202020", "size": 24}
            texts = [str(d.get("label") or "metric") for d in datas]
        elif kind == "error nodes":
            marker = {
                "symbol": "square",
                "color": ERROR_FILL,
                "size": sizes,
                "line": {"width": 2.5, "color": [_sign_colour(e) for e in effects]},
            }
            texts = ["error"] * len(names)
        else:
            marker = {
                "symbol": ["hexagon" if d.get("members") else "circle" for d in datas],
                "color": [_sign_colour(e) for e in effects],
                "size": sizes,
                "line": {"width": 1, "color": "#202020"},
                "opacity": 0.9,
            }
            texts = [
                f"{len(d['members'])}× {short_label(d)}" if d.get("members") else short_label(d)
                for d in datas
            ]
        # alternate labels above and below along each row, so neighbours do not overlap
        order = sorted(range(len(names)), key=lambda i: (coords[names[i]][1], coords[names[i]][0]))
        positions = [""] * len(names)
        for rank, i in enumerate(order):
            positions[i] = "top center" if rank % 2 == 0 else "bottom center"
            if kind != "features":  # beside the marker, clear of the features' labels
                positions[i] = "middle left" if kind == "error nodes" else "top center"
        traces.append(
            go.Scatter(
                x=[coords[n][0] for n in names],
                y=[coords[n][1] for n in names],
                ids=[str(n) for n in names],
                mode="markers+text",
                text=texts,
                textposition=positions,
                textfont={"size": 10, "color": "#202020"},
                marker=marker,
                hovertext=[_hover(n, d) for n, d in zip(names, datas, strict=True)],
                hoverinfo="text",
                name=kind,
            )
        )
    return traces


def _title(graph: nx.DiGraph, shown: nx.DiGraph, note: str) -> str:
    settings = graph.graph.get("settings") or {}
    total = sum(1 for _, d in graph.nodes(data=True) if not is_metric(d))
    drawn = sum(1 for _, d in shown.nodes(data=True) if not is_metric(d))
    title = (
        f"circuit: {drawn} of {total} nodes ({note}), {shown.number_of_edges()} of "
        f"{graph.number_of_edges()} edges · metric {settings.get('metric', 'metric')}"
    )
    clean, patch = graph.graph.get("metric_clean"), graph.graph.get("metric_patch")
    if isinstance(clean, int | float) and isinstance(patch, int | float):
        title += f" (clean {clean:.4g}, patch {patch:.4g})"
    return title


def _figure(drawn: nx.DiGraph, title: str) -> go.Figure:
    coords, rows, positional = _layout(drawn)
    settings = drawn.graph.get("settings") or {}
    figure = go.Figure(_edge_traces(drawn, coords) + _node_traces(drawn, coords))
    xaxis: dict[str, Any] = {"zeroline": False, "showgrid": positional}
    if positional:
        positions = node_positions(drawn)
        tokens = settings.get("prompt_tokens")
        ticks = list(range(positions[-1] + 1))
        labels = (
            [html.escape(repr(str(tokens[t]))[1:-1]) for t in ticks]
            if isinstance(tokens, list) and len(tokens) > positions[-1]
            else [str(t) for t in ticks]
        )
        xaxis.update(title="prompt token", tickvals=ticks, ticktext=labels, tickangle=-30)
    else:
        xaxis.update(
            title="nodes of each place, by effect (negative left, positive right)",
            showticklabels=False,
        )
    figure.update_layout(
        title={"text": title, "font": {"size": 15}},
        xaxis=xaxis,
        yaxis={
            "tickvals": list(range(len(rows))),
            "ticktext": rows,
            "zeroline": False,
            "range": [-0.6, len(rows) - 0.3],
        },
        hovermode="closest",
        plot_bgcolor="white",
        height=max(560, 110 * len(rows) + 200),
        legend={"itemsizing": "constant", "orientation": "h", "y": -0.12},
        margin={"l": 80, "r": 30, "t": 70, "b": 90},
    )
    return figure


def _cells(name: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    effect, activation = number(data.get("effect")), number(data.get("activation"))
    return (
        str(name),
        "" if is_metric(data) else short_label(data),
        str(data.get("place", "")),
        "error" if data.get("is_error") else str(data.get("feature", "")),
        str(data.get("position", "")),
        "" if math.isnan(effect) else f"{effect:+.4g}",
        "" if math.isnan(activation) else f"{activation:.4g}",
        str(data.get("label") or ""),
    )


def _row(name: str, data: Mapping[str, Any], shown: bool) -> str:
    cells = "".join(f"<td>{html.escape(c)}</td>" for c in _cells(name, data))
    return f"<tr><td>{'✓' if shown else ''}</td>{cells}</tr>"


def _node_table(graph: nx.DiGraph, drawn: nx.DiGraph) -> str:
    """Every node of the circuit, strongest first, as a plain HTML table (searchable, readable
    without JavaScript); a supernode's row opens to its members."""
    columns = ("shown", "node", "short label", "place", "feature", "position", "effect")
    head = "".join(f"<th>{h}</th>" for h in (*columns, "activation", "label"))
    shown = set(drawn.nodes)
    for data in drawn.nodes.values():
        shown.update(data.get("members") or [])
    groups: dict[str, list[str]] = {}
    for name, data in graph.nodes(data=True):
        if data.get("supernode"):
            groups.setdefault(str(data["supernode"]), []).append(name)
    rows, done = [], set()
    ordered = sorted(graph.nodes(data=True), key=lambda item: -abs(_effect(item[1])))
    for name, data in ordered:
        group = data.get("supernode")
        if not group:
            rows.append(_row(name, data, name in shown))
            continue
        if group in done:
            continue
        done.add(group)
        members = groups[group]
        inner = "".join(_row(m, graph.nodes[m], m in shown) for m in members)
        effect = sum(_effect(graph.nodes[m]) for m in members)
        rows.append(
            f'<tr><td colspan="10"><details><summary>supernode {html.escape(group)}: '
            f"{len(members)} features, effect {effect:+.4g}</summary>"
            f"<table><tbody>{inner}</tbody></table></details></td></tr>"
        )
    count = sum(1 for _, d in graph.nodes(data=True) if not is_metric(d))
    return (
        f"<details open><summary>the circuit's {count} nodes and the metric (✓: in the "
        f"figure)</summary><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></details>"
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
    graph: nx.DiGraph,
    path: str | Path,
    *,
    title: str | None = None,
    max_nodes: int | None = MAX_NODES,
    pruned: bool = True,
    plotly_js: str | None = None,
) -> Path:
    """Write a readable, self-contained plotly figure of the circuit (plotly.js inlined) and a
    table of its nodes, atomically. By default the figure shows the nodes with a path to the
    metric, at most ``max_nodes``; ``pruned=False`` (and ``max_nodes=None``) every node.
    ``plotly_js``, a URL relative to the page ending in ``.js``, loads one shared copy of
    plotly.js instead (a site of many figures)."""
    shown, note = figure_circuit(graph, max_nodes=max_nodes, pruned=pruned)
    drawn = _collapse_supernodes(shown)
    figure = _figure(drawn, title if title is not None else _title(graph, shown, note))
    div = figure.to_html(include_plotlyjs=plotly_js or True, full_html=False)
    page = _PAGE.format(
        title=html.escape(str(figure.layout.title.text or "circuit")),
        figure=div,
        table=_node_table(graph, drawn),
    )
    return write_text_atomic(path, page)
