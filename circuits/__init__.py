"""Sparse feature circuits on a model: model access and splicing (``model``), prompt sets and
corpora (``data``), dictionary training and evaluation on a model's activations (``training``),
circuit discovery and evaluation (``discovery``) and export (``export``).

See ``docs/architecture.md`` for the map of these rooms and the arrows between them.
"""
