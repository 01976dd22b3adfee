"""Circuits out of this package: GraphML, a Neuronpedia graph JSON, an interactive HTML figure,
and a PNG of that figure.

Every writer takes the circuit graph of ``circuits.discovery.graph`` (its meaning is defined
there) and writes atomically (``sparse_circuits.files.atomic_path``): a reader sees the old file
or the whole new one, never a part; a missing output folder is a ``FileNotFoundError`` naming it.

One module per format, its schema in its docstring: ``graphml`` (``to_graphml``),
``neuronpedia`` (``to_neuronpedia``), ``html`` (``to_html``) and ``png`` (``render_png``, a
headless-Chromium screenshot of the HTML); ``common`` holds what several formats share.
``export`` writes any format of ``WRITERS`` by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

from sparse_circuits.circuits.export.graphml import to_graphml
from sparse_circuits.circuits.export.html import to_html
from sparse_circuits.circuits.export.neuronpedia import to_neuronpedia
from sparse_circuits.circuits.export.png import CHROMIUM, RenderError, render_png

__all__ = [
    "WRITERS",
    "FORMATS",
    "CHROMIUM",
    "RenderError",
    "export",
    "to_graphml",
    "to_neuronpedia",
    "to_html",
    "render_png",
]

WRITERS: dict[str, Callable[..., Path]] = {
    "graphml": to_graphml,
    "neuronpedia": to_neuronpedia,
    "html": to_html,
}
"""Format name -> writer ``(graph, path, **options) -> path``."""

FORMATS = tuple(WRITERS)
"""The format names ``export`` takes, in ``WRITERS`` order."""


def export(graph: nx.DiGraph, path: str | Path, fmt: str, **options: Any) -> Path:
    """Write ``graph`` as ``fmt`` (one of ``FORMATS``); ``options`` go to the writer."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return WRITERS[fmt](graph, path, **options)
