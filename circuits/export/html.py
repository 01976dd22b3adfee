"""HTML export of a circuit (``to_html``): a self-contained plotly figure (plotly.js inlined).

Rows bottom to top are the circuit's places in forward order (embed, then per layer attn,
mlp_in, mlp, resid), the metric at the top. With per-position nodes (``position >= 0``) x is
the position (nodes sharing a place and position spread around it); with summed nodes each
place's nodes spread left to right by effect, most negative left. Colour is the effect's sign
(blue positive, red negative), size grows with |effect|; error nodes are squares, features
circles, the metric a diamond. Edges are drawn as a few line traces (sign x |weight| bucket),
so a thousand edges stay fast; hovering a node shows its id, place, effect, activation and
label (top activating contexts when labelled), hovering an edge's midpoint its ends and weight.
Below the figure, a table of the nodes. ``render_png`` (``export.png``) screenshots such a file
with headless Chromium.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import plotly.graph_objects as go

from sparse_circuits.circuits.export.common import (
    is_metric,
    item_text,
    n_layers_of,
    node_positions,
    number,
)
from sparse_circuits.circuits.model.places import parse_place
from sparse_circuits.files import write_text_atomic

__all__ = ["to_html"]

POSITIVE = "#2166ac"
NEGATIVE = "#b2182b"
NEUTRAL = "#8c8c8c"


def _strength(data: Mapping[str, Any]) -> float:
    """|effect|, 0 when missing."""
    effect = number(data.get("effect"))
    return 0.0 if math.isnan(effect) else abs(effect)


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

    def effect_of(n: str) -> float:
        e = number(graph.nodes[n].get("effect"))
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
    positions = node_positions(graph)
    metric_x = float(positions[-1]) if positional else 0.0
    for name, data in graph.nodes(data=True):
        if is_metric(data):
            coords[name] = (metric_x, float(len(rows)))
    return coords, rows + ["metric"], positional


def _hover(name: str, data: Mapping[str, Any]) -> str:
    parts = [f"<b>{html.escape(str(name))}</b>"]
    if not is_metric(data):
        what = "error" if data.get("is_error") else f"feature {data.get('feature')}"
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
        for item in contexts:
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
        abs(number(d.get("effect")))
        for _, d in graph.nodes(data=True)
        if not is_metric(d) and not math.isnan(number(d.get("effect")))
    ]
    biggest = max(effects, default=0.0) or 1.0
    groups: dict[str, list[str]] = {"features": [], "errors": [], "metric": []}
    for name, data in graph.nodes(data=True):
        kind = "metric" if is_metric(data) else "errors" if data.get("is_error") else "features"
        groups[kind].append(name)
    symbols = {"features": "circle", "errors": "square", "metric": "diamond"}
    traces = []
    for kind, names in groups.items():
        if not names:
            continue
        colours, sizes = [], []
        for name in names:
            effect = number(graph.nodes[name].get("effect"))
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
        positions = node_positions(graph)
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
        effect, activation = number(data.get("effect")), number(data.get("activation"))
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
