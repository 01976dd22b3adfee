"""A vector per context, to cluster contexts by what the model does on them (Marks et al.
2024, section 5; Michaud et al. 2023 cluster by gradients).

Every vector is read at the context's last position (the one that predicts its answer), over
the places of the dictionary set in forward order, one block of columns per place:

- ``activations``: each feature's activation ``f`` (``d_sae`` columns per place);
- ``attribution``: ``f * d log p(answer) / d f``, activation times gradient: nonzero only
  where a feature is active (``d_sae`` columns per place);
- ``gradients``: ``d log p(answer) / d x`` of each place's activation ``x`` (``d_model``
  columns per place): the model's own gradients, a cheap stand-in for Michaud et al.'s
  gradients with respect to every parameter.

1. Contexts run in batches with every dictionary spliced (``Runner``), the metric the log-
   probability of each context's answer (``AnswerLogProb``).
2. One backward pass per batch gives the gradients (none for ``activations``).
3. The last position's values become the rows of a sparse CSR matrix ``(N, columns)``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import scipy.sparse
import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.behaviours.contexts import Contexts
from sparse_circuits.circuits.discovery.metrics import AnswerLogProb
from sparse_circuits.circuits.model.adapters import ModelAdapter
from sparse_circuits.circuits.model.runner import Runner
from sparse_circuits.dictionaries import Dictionary

__all__ = ["DESCRIPTIONS", "Description", "ContextVectors", "describe_contexts"]

Description = Literal["attribution", "activations", "gradients"]
DESCRIPTIONS: tuple[str, ...] = get_args(Description)
"""The names ``describe_contexts`` takes, in the order of the module's docstring."""


class ContextVectors(NamedTuple):
    matrix: scipy.sparse.csr_matrix
    """``(N, columns)`` one row per context, float32."""
    blocks: list[tuple[str, int]]
    """``(place, width)`` of each block of columns, in column order."""


def _last_position_rows(runner: Runner, batch, description: Description) -> list[torch.Tensor]:
    """Per place, the ``(B, width)`` values of one batch at its last position."""
    run = runner.run(batch.clean_ids, batch, grad=description != "activations")
    places = list(run.places.values())
    if description == "activations":
        return [sp.features[:, -1].detach() for sp in places]
    metric = run.metric.sum()
    if description == "gradients":  # a spliced place writes decode(f) + error: d/d error = d/dx
        return [grad[:, -1] for grad in torch.autograd.grad(metric, [sp.error for sp in places])]
    grads = torch.autograd.grad(metric, [sp.features for sp in places])
    return [(sp.features * grad)[:, -1].detach() for sp, grad in zip(places, grads, strict=True)]


def describe_contexts(
    model: Any,
    adapter: ModelAdapter,
    dictionaries: Mapping[str, Dictionary],
    contexts: Contexts,
    description: Description = "attribution",
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> ContextVectors:
    """The ``description`` vector of every context (steps in the module's docstring)."""
    if description not in DESCRIPTIONS:
        raise ValueError(
            f"description must be one of {', '.join(DESCRIPTIONS)}, got {description!r}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    runner = Runner(model, adapter, dictionaries, AnswerLogProb())
    blocks = [
        (place, adapter.width(place) if description == "gradients" else dictionary.d_sae)
        for place, dictionary in runner.dictionaries.items()
    ]
    parts = []
    starts = range(0, len(contexts), batch_size)
    for start in tqdm(
        starts, desc=f"describe ({description})", disable=not progress, file=sys.stderr
    ):
        batch = contexts.batch(range(start, min(start + batch_size, len(contexts))))
        rows_BC = torch.cat(_last_position_rows(runner, batch, description), dim=1)
        parts.append(scipy.sparse.csr_matrix(rows_BC.float().cpu().numpy()))
    matrix = scipy.sparse.vstack(parts, format="csr").astype(np.float32)
    matrix.eliminate_zeros()
    return ContextVectors(matrix, blocks)
