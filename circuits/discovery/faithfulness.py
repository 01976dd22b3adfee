"""Faithfulness and completeness of a circuit by ablation (Marks et al. 2024, section 3.2).

    faithfulness(C) = (m(C) - m(empty)) / (m(M) - m(empty))
    completeness(C) = faithfulness of the complement of C

``m(C)`` runs the model with every node outside ``C`` ablated, ``m(M)`` is the full model and
``m(empty)`` ablates every node; ``m`` is the mean metric over the prompts.

1. Run the clean prompts once with every dictionary spliced; keep features and errors.
2. Ablation values per place: ``mean`` (per position over the prompts of one length; the
   paper's choice), ``zero``, or ``resample`` (the same place in another prompt of the batch).
3. Re-run with ``edit_features``/``edit_error``: the chosen nodes keep the value they take in
   that run (so they feel upstream ablations, as in the paper's code) and every other node is
   written its ablation value, computed once from the clean run. Error nodes are ablated like features
   (``errors="ablate"``) or always kept (``errors="keep"``).
4. A threshold sweep gives the curve of faithfulness and completeness against circuit size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.discovery.metrics import LogitDiff, Metric
from sparse_circuits.circuits.discovery.nodes import NodeEffects, NodeSelection, select_nodes
from sparse_circuits.circuits.model.runner import Runner
from sparse_circuits.dictionaries import Dictionary

__all__ = ["Ablation", "CircuitScore", "score_selection", "faithfulness_curve", "plot_curve"]

Ablation = Literal["mean", "zero", "resample"]


@dataclass
class CircuitScore:
    n_nodes: int
    faithfulness: float
    completeness: float
    m_circuit: float
    m_complement: float
    m_full: float
    m_empty: float


def _ablation_values(t: torch.Tensor, ablation: Ablation, seed: int) -> torch.Tensor:
    """``(B, T, ...)`` -> what replaces ablated entries, same shape."""
    if ablation == "zero":
        return torch.zeros_like(t)
    if ablation == "mean":  # summed in float32, whatever the model's dtype
        return t.float().mean(0, keepdim=True).to(t.dtype).expand_as(t)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(t), generator=generator)
    if len(t) > 1:  # a derangement: every prompt takes another prompt's values
        order = torch.roll(torch.arange(len(t)), 1)[order]
    return t[order.to(t.device)]


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
    errors: Literal["ablate", "keep"] = "ablate",
    seed: int = 0,
    progress: bool = True,
) -> list[CircuitScore]:
    """Faithfulness and completeness of each selection (all scored on the same runs)."""
    runner = Runner(model, adapter, dictionaries, metric or LogitDiff())
    n = sum(len(b) for b in batches)
    totals = {"full": 0.0, "empty": 0.0}
    circuit = [0.0] * len(selections)
    complement = [0.0] * len(selections)
    for batch in tqdm(batches, desc="faithfulness", disable=not progress):
        run = runner.run(batch.clean_ids, batch)
        clean = {p: (sp.features.detach(), sp.error.detach()) for p, sp in run.places.items()}
        ablated = {
            p: (_ablation_values(f, ablation, seed), _ablation_values(e, ablation, seed + 1))
            for p, (f, e) in clean.items()
        }
        totals["full"] += float(run.metric.sum())

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
