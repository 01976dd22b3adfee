"""Faithfulness and completeness of a circuit by ablation (Marks et al. 2024, section 3.2).

    faithfulness(C) = (m(C) - m(empty)) / (m(M) - m(empty))
    completeness(C) = faithfulness of the complement of C

``m(C)`` runs the model with every node outside ``C`` ablated, ``m(M)`` is the full model and
``m(empty)`` ablates every node; ``m`` is the mean metric over the prompts. What an ablated
node is replaced with is defined once, in ``circuits.model.ablation``.

1. ``mean`` and ``resample`` only: a first pass runs every batch's clean prompts with every
   dictionary spliced and keeps, per place, the per-position means of features and errors
   over the whole evaluation set, prompts aligned at their last token (``mean``, the paper's
   choice), or every prompt's values pooled by length with a derangement of partners within
   each length (``resample``: every place of a prompt takes the values of one other prompt).
2. Per batch, the clean run gives ``m(M)`` and the values each node is ablated to
   (``ablation_values``: zeros, the means at the batch's positions, or the partners' values).
3. Re-run with ``edit_features``/``edit_error``: the chosen nodes keep the value they take in
   that run (so they feel upstream ablations, as in the paper's code) and every other node is
   written its ablation value. Error nodes are ablated like features (``errors="ablate"``) or
   always kept (``errors="keep"``).
4. A threshold sweep gives the curve of faithfulness and completeness against circuit size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.discovery.metrics import LogitDiff, Metric
from sparse_circuits.circuits.discovery.nodes import NodeEffects, NodeSelection, select_nodes
from sparse_circuits.circuits.model.ablation import (
    Ablation,
    PositionMean,
    ablation_values,
    check_ablation,
    derangement,
)
from sparse_circuits.circuits.model.runner import Runner
from sparse_circuits.dictionaries import Dictionary

__all__ = [
    "Ablation",
    "ErrorNodes",
    "CircuitScore",
    "score_selection",
    "faithfulness_curve",
    "plot_curve",
]

ErrorNodes = Literal["ablate", "keep"]
"""What happens to error nodes outside the circuit: ablated like features, or always kept."""


@dataclass
class CircuitScore:
    n_nodes: int
    faithfulness: float
    completeness: float
    m_circuit: float
    m_complement: float
    m_full: float
    m_empty: float


PlaceTensors = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""place -> (features ``(B, T, d_sae)``, error ``(B, T, d_out)``), or what stands for them."""


@dataclass
class _Reference:
    """What one batch's ablation values are computed from (``ablation_values``)."""

    places: PlaceTensors = field(default_factory=dict)
    """place -> the references of its features and error: the means ``(T, ...)`` at the
    batch's positions (``mean``) or the pools ``(N, T, ...)`` of every prompt of the batch's
    length (``resample``); empty for ``zero``."""
    rows: torch.Tensor | None = None
    """``resample``: ``(B,)``, the row of the pools each prompt takes its values from."""


def _clean_run(runner: Runner, batch: PromptBatch) -> tuple[float, PlaceTensors]:
    """The sum of the metric over the batch and every place's values, unablated."""
    run = runner.run(batch.clean_ids, batch)
    clean = {p: (sp.features.detach(), sp.error.detach()) for p, sp in run.places.items()}
    return float(run.metric.sum()), clean


def _mean_references(
    runner: Runner, batches: list[PromptBatch], progress: bool
) -> list[_Reference]:
    """Step 1 for ``mean``: per place, the position means over every prompt of the set."""
    if sum(len(b) for b in batches) < 2:
        raise ValueError("mean ablation needs at least 2 prompts: one prompt's mean is itself")
    means: dict[str, tuple[PositionMean, PositionMean]] = {}
    for batch in tqdm(batches, desc="ablation means", disable=not progress):
        for place, (f, e) in _clean_run(runner, batch)[1].items():
            mean_f, mean_e = means.setdefault(place, (PositionMean(), PositionMean()))
            mean_f.add(f)
            mean_e.add(e)
    return [
        _Reference(
            {p: (f.for_length(b.length), e.for_length(b.length)) for p, (f, e) in means.items()}
        )
        for b in batches
    ]


def _resample_partners(batches: list[PromptBatch], seed: int) -> list[torch.Tensor]:
    """Per batch ``(B,)``: each prompt's partner, as a row of its length's pool (the prompts
    of that length, batch after batch). One derangement per length, lengths in increasing
    order, all drawn from one generator seeded with ``seed``."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for number, batch in enumerate(batches):
        by_length[batch.length].append(number)
    generator = torch.Generator().manual_seed(seed)
    rows: dict[int, torch.Tensor] = {}
    for length in sorted(by_length):
        numbers = by_length[length]
        sizes = [len(batches[number]) for number in numbers]
        if sum(sizes) == 1:
            indices = batches[numbers[0]].indices
            which = "a prompt" if indices is None else f"prompt {indices[0] + 1} of the set"
            raise ValueError(
                f"resample ablation takes a prompt's values from another prompt of its length, "
                f"but {which} is the only one of {length} tokens; use mean or zero ablation, "
                "or add prompts of that length"
            )
        order = derangement(sum(sizes), generator=generator)
        for number, part in zip(numbers, order.split(sizes), strict=True):
            rows[number] = part
    return [rows[number] for number in range(len(batches))]


def _resample_references(
    runner: Runner, batches: list[PromptBatch], seed: int, progress: bool
) -> list[_Reference]:
    """Step 1 for ``resample``: every prompt's values, pooled by length (all held in memory),
    and the partners."""
    rows = _resample_partners(batches, seed)  # before the slow pass: it may fail
    pieces: dict[int, dict[str, tuple[list, list]]] = defaultdict(dict)
    for batch in tqdm(batches, desc="ablation pools", disable=not progress):
        for place, (f, e) in _clean_run(runner, batch)[1].items():
            pool_f, pool_e = pieces[batch.length].setdefault(place, ([], []))
            pool_f.append(f)
            pool_e.append(e)
    pools = {
        length: {p: (torch.cat(f), torch.cat(e)) for p, (f, e) in by_place.items()}
        for length, by_place in pieces.items()
    }
    return [_Reference(pools[b.length], part) for b, part in zip(batches, rows, strict=True)]


def _references(
    runner: Runner, batches: list[PromptBatch], ablation: Ablation, seed: int, progress: bool
) -> list[_Reference]:
    """Step 1: per batch, what its ablation values are computed from."""
    if ablation == "mean":
        return _mean_references(runner, batches, progress)
    if ablation == "resample":
        return _resample_references(runner, batches, seed, progress)
    return [_Reference() for _ in batches]


def _ablated(ablation: Ablation, clean: PlaceTensors, reference: _Reference) -> PlaceTensors:
    """Step 2: per place, the values every feature and error entry is ablated to."""
    ablated = {}
    for place, values in clean.items():
        sources = reference.places.get(place, (None, None))
        ablated[place] = tuple(
            ablation_values(ablation, value, reference=source, rows=reference.rows)
            for value, source in zip(values, sources, strict=True)
        )
    return ablated


def _keep_mask(mask: torch.Tensor, shape: torch.Size, per_position: bool) -> torch.Tensor:
    """Selection mask ``(F,)``/``()`` or, per position, ``(T, F)``/``(T,)``, broadcast to
    ``(B, T, ...)``."""
    return (mask.unsqueeze(0) if per_position else mask).expand(shape)


def _masks(clean: dict, selection: NodeSelection | None, invert: bool):
    """Per place, which feature and error entries ``(B, T, ...)`` are kept: the selection's
    nodes (nothing for ``None``), or everything but them with ``invert``."""
    keep_f, keep_e = {}, {}
    for place, (f, e) in clean.items():
        if selection is None:
            mask_f = torch.zeros(f.shape, dtype=torch.bool)
            mask_e = torch.zeros(e.shape[:-1], dtype=torch.bool)
        else:
            per_position = selection.features[place].dim() == 2
            mask_f = _keep_mask(selection.features[place], f.shape, per_position)
            mask_e = _keep_mask(selection.errors[place], e.shape[:-1], per_position)
        keep_f[place], keep_e[place] = (~mask_f, ~mask_e) if invert else (mask_f, mask_e)
    return keep_f, keep_e


def _metric_with(runner: Runner, batch: PromptBatch, ablated, keep, errors) -> float:
    """Sum over the batch of the metric with everything outside ``keep`` ablated. Kept nodes
    take the value they have in this (ablated) run, so upstream ablations reach them."""
    keep_f, keep_e = keep

    def edit_features(place, features):
        return torch.where(keep_f[place].to(features.device), features, ablated[place][0])

    def edit_error(place, error):
        if errors == "keep":
            return error
        return torch.where(keep_e[place].to(error.device)[..., None], error, ablated[place][1])

    run = runner.run(batch.clean_ids, batch, edit_features=edit_features, edit_error=edit_error)
    return float(run.metric.sum())


def score_selection(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    batches: list[PromptBatch],
    selections: list[NodeSelection],
    *,
    metric: Metric | None = None,
    ablation: Ablation = "mean",
    errors: ErrorNodes = "ablate",
    seed: int = 0,
    progress: bool = True,
) -> list[CircuitScore]:
    """Faithfulness and completeness of each selection (all scored on the same runs).
    ``ablation`` is what nodes outside a circuit are replaced with (``circuits.model.ablation``);
    ``seed`` draws the partners of ``resample``."""
    check_ablation(ablation)
    runner = Runner(model, adapter, dictionaries, metric or LogitDiff())
    references = _references(runner, batches, ablation, seed, progress)
    n = sum(len(b) for b in batches)
    totals = {"full": 0.0, "empty": 0.0}
    circuit = [0.0] * len(selections)
    complement = [0.0] * len(selections)
    for batch, reference in tqdm(
        list(zip(batches, references, strict=True)), desc="faithfulness", disable=not progress
    ):
        m_full, clean = _clean_run(runner, batch)
        ablated = _ablated(ablation, clean, reference)
        totals["full"] += m_full
        totals["empty"] += _metric_with(runner, batch, ablated, _masks(clean, None, False), errors)
        for i, selection in enumerate(selections):
            circuit[i] += _metric_with(
                runner, batch, ablated, _masks(clean, selection, False), errors
            )
            complement[i] += _metric_with(
                runner, batch, ablated, _masks(clean, selection, True), errors
            )
    m_full, m_empty = totals["full"] / n, totals["empty"] / n
    span = m_full - m_empty
    return [
        CircuitScore(
            n_nodes=selection.count(),
            faithfulness=(circuit[i] / n - m_empty) / span,
            completeness=(complement[i] / n - m_empty) / span,
            m_circuit=circuit[i] / n,
            m_complement=complement[i] / n,
            m_full=m_full,
            m_empty=m_empty,
        )
        for i, selection in enumerate(selections)
    ]


def faithfulness_curve(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    batches: list[PromptBatch],
    effects: NodeEffects,
    thresholds: list[float],
    **options: Any,
) -> list[tuple[float, CircuitScore]]:
    """Faithfulness and completeness at each node threshold (a log-spaced sweep, as in the
    paper's figures)."""
    selections = [select_nodes(effects, threshold=t) for t in thresholds]
    scores = score_selection(model, adapter, dictionaries, batches, selections, **options)
    return list(zip(thresholds, scores, strict=True))


def plot_curve(curve: list[tuple[float, CircuitScore]], path: str | Path, *, title: str) -> Path:
    """Faithfulness and completeness against the number of nodes, as a self-contained HTML."""
    import plotly.graph_objects as go

    from sparse_circuits.files import atomic_path

    sizes = [score.n_nodes for _, score in curve]
    figure = go.Figure()
    for name in ("faithfulness", "completeness"):
        figure.add_trace(
            go.Scatter(
                x=sizes,
                y=[getattr(score, name) for _, score in curve],
                mode="lines+markers",
                name=name,
                text=[f"threshold {t:.3g}" for t, _ in curve],
            )
        )
    figure.update_layout(
        title=title, xaxis_title="nodes in the circuit", yaxis_title="score", xaxis_type="log"
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.write_html(tmp, include_plotlyjs=True)
    return path
