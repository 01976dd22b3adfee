"""GraphML export of a circuit (``to_graphml``), for Gephi, Cytoscape and
``networkx.read_graphml``.

Every value is a GraphML scalar: ``boolean`` (written ``true``/``false``), ``long``, ``double``
or ``string``; one type per attribute name (integers mixed with floats become ``double``;
anything else mixed becomes ``string``). A missing value, ``None``, NaN or an infinity is left
out of that node's (edge's) data, so an error node has no ``activation``. Lists and
dictionaries become JSON text (a ``string``): a node's ``top_contexts`` reads back with
``json.loads(data["top_contexts"])`` as the list of ``{"activation", "text", "context",
"position"}`` it was (``circuits.discovery.graph``, "GraphML"). The
graph's ``settings`` are flattened to string attributes ``settings.<key>[.<subkey>...]`` (lists
and other non-scalars as JSON text); the other graph attributes (``metric_clean``,
``metric_patch``) stay numbers. Characters XML 1.0 cannot hold (control characters) become
U+FFFD.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from sparse_circuits.circuits.export.common import json_safe, plain
from sparse_circuits.files import atomic_path

__all__ = ["to_graphml"]

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def _graphml_scalar(value: Any) -> bool | int | float | str | None:
    """A GraphML-legal scalar for ``value``, or ``None`` to leave it out."""
    value = plain(value)
    if value is None:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(json_safe(value), ensure_ascii=False)
    return str(value)


def _flatten_settings(value: Any, prefix: str) -> dict[str, str]:
    """Nested settings as ``{"settings.a.b": "text"}``: scalars as text, lists as JSON."""
    value = plain(value)
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
    return {prefix: json.dumps(json_safe(value), ensure_ascii=False)}


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
