"""What several export formats share: plain Python values for numpy and torch scalars,
JSON-safe values, and facts read off the circuit graph (its layer count, the metric node, the
positions its nodes sit at)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np
import torch

from sparse_circuits.circuits.discovery.graph import is_metric

__all__ = [
    "plain",
    "number",
    "json_safe",
    "item_text",
    "is_metric",
    "n_layers_of",
    "node_positions",
]


def plain(value: Any) -> Any:
    """Python scalars for numpy and torch scalars; everything else unchanged."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def number(value: Any) -> float:
    """A float, NaN for anything missing or not a number."""
    value = plain(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)


def json_safe(value: Any) -> Any:
    """JSON-ready: NaN/inf -> None, tuples -> lists, tensors and numpy -> Python."""
    value = plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return json_safe(value.tolist())
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def item_text(item: Any) -> str:
    """One item of a listed attribute as text: a top-context dictionary as ``text
    (activation)``, another dictionary as JSON, anything else as ``str``."""
    item = plain(item)
    if isinstance(item, Mapping):
        if "text" in item:
            activation = number(item.get("activation"))
            suffix = "" if math.isnan(activation) else f" ({activation:.4g})"
            return f"{item['text']}{suffix}"
        return json.dumps(json_safe(item), sort_keys=True, ensure_ascii=False)
    return str(item)


def n_layers_of(graph: nx.DiGraph) -> int:
    """The model's layer count: the metric node's ``layer``, else one past the deepest node."""
    for _, data in graph.nodes(data=True):
        if is_metric(data):
            return int(data["layer"])
    layers = [int(d.get("layer", -1)) for _, d in graph.nodes(data=True)]
    return max(layers, default=-1) + 1


def node_positions(graph: nx.DiGraph) -> list[int]:
    """The prompt positions of the per-position nodes, sorted (empty for summed effects)."""
    return sorted(
        {
            int(d["position"])
            for _, d in graph.nodes(data=True)
            if not is_metric(d) and int(d.get("position", -1)) >= 0
        }
    )
