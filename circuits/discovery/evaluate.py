"""Evaluate a saved circuit on a prompt set: the ``evaluate`` command's pipeline.

1. Load the circuit; its settings name the model, the dictionaries, the places, the metric,
   the method, the aggregation and the precision it was discovered with (model, dictionaries
   and precision can be overridden). The metric is rebuilt from its recorded name
   (``metrics.METRICS``).
2. Turn its nodes back into selection masks and score faithfulness and completeness on the
   prompts by ablation (``circuits.faithfulness``), with that metric.
3. Warn (``CircuitWarning``) and record under ``warnings`` when faithfulness is
   ill-conditioned: ``|m(full) - m(empty)|`` under ``ILL_CONDITIONED`` of ``|m(full)|``.
4. circuit-tracer's replacement and completeness scores of the circuit graph
   (``circuits.discovery.influence``), from its edges alone.
5. With ``curve``, recompute node effects on the circuit's own prompts with its own method,
   sweep log-spaced node thresholds, score each on the given prompts and plot the curve.
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.discover import load_prompt_batches
from sparse_circuits.circuits.discovery.faithfulness import (
    Ablation,
    ErrorNodes,
    faithfulness_curve,
    plot_curve,
    score_selection,
)
from sparse_circuits.circuits.discovery.graph import (
    CircuitFileError,
    load_circuit,
    selection_from_circuit,
)
from sparse_circuits.circuits.discovery.influence import graph_scores
from sparse_circuits.circuits.discovery.metrics import METRICS, Metric
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.errors import CircuitWarning
from sparse_circuits.files import require_folder
from sparse_circuits.precision import Precision, precision_name

__all__ = [
    "ILL_CONDITIONED",
    "evaluate_circuit_file",
    "curve_thresholds",
    "recorded_metric",
    "ill_conditioned",
]

ILL_CONDITIONED = 0.1
"""Faithfulness divides by ``m(full) - m(empty)``; when that is under this fraction of
``|m(full)|`` the ablated model still does most of the task and small differences of
``m(C)`` swing the ratio far outside [0, 1] (faithfulness 1.58 and -1.04 were seen with
prompts that all had singular subjects)."""


def ill_conditioned(m_full: float, m_empty: float) -> str | None:
    """The one-line warning when ``|m_full - m_empty|`` is under ``ILL_CONDITIONED`` of
    ``|m_full|``, else ``None``."""
    span = abs(m_full - m_empty)
    if not span < ILL_CONDITIONED * abs(m_full):
        return None
    return (
        f"faithfulness is ill-conditioned: |m(full) - m(empty)| = {span:.3g} is under "
        f"{ILL_CONDITIONED:g} of |m(full)| = {abs(m_full):.3g}, so the fully ablated model "
        "still does the task (likely every prompt shares what the metric reads, e.g. all "
        "subjects singular, and mean ablation keeps it); evaluate on balanced prompts or with "
        "zero ablation"
    )


def curve_thresholds(effects, n: int = 12) -> list[float]:
    """``n`` log-spaced thresholds spanning the nonzero |effects|, largest first."""
    values = np.concatenate(
        [t.abs().flatten().numpy() for t in (*effects.features.values(), *effects.errors.values())]
    )
    values = values[values > 0]
    if values.size == 0:
        return [1.0]
    low, high = np.quantile(values, 0.5), values.max()
    return [float(t) for t in np.geomspace(high, max(low, high * 1e-4), n)]


def recorded_metric(circuit: str | Path, settings: dict[str, Any]) -> Metric:
    """The metric a circuit was discovered with, rebuilt from the name in its settings."""
    name = settings.get("metric")
    if name is None:
        raise CircuitFileError(f"{circuit}: its settings name no metric")
    if name not in METRICS:
        raise CircuitFileError(
            f"{circuit}: cannot rebuild its metric {name!r} from the name "
            f"(metrics rebuilt from their names: {', '.join(METRICS)})"
        )
    return METRICS[name]()


def _recorded_attribution(circuit: str | Path, settings: dict[str, Any]) -> AttributionConfig:
    """The attribution settings a circuit was discovered with (defaults for those missing)."""
    recorded = {f.name: settings[f.name] for f in fields(AttributionConfig) if f.name in settings}
    try:
        return AttributionConfig(**recorded)
    except ValueError as error:
        raise CircuitFileError(f"{circuit}: {error}") from None


def evaluate_circuit_file(
    circuit: str | Path,
    prompts: str | Path,
    *,
    model: str | None = None,
    dictionaries: str | Path | None = None,
    device: str = "cpu",
    precision: Precision | None = None,
    ablation: Ablation = "mean",
    errors: ErrorNodes = "ablate",
    curve: str | Path | None = None,
) -> dict[str, Any]:
    """Faithfulness and completeness of the circuit file ``circuit`` on the prompt file
    ``prompts``, with the metric, places and attribution settings it was discovered with,
    and the graph's replacement and completeness scores; a ``CircuitWarning`` (also listed
    under ``warnings``) when faithfulness is ill-conditioned; with ``curve``, also the
    threshold sweep, plotted there (HTML). ``precision`` defaults to the circuit's own
    (float32 for circuits that record none); the scores record it."""
    graph = load_circuit(circuit)
    settings = graph.graph["settings"]
    model_name = model or settings.get("model")
    folder = dictionaries or settings.get("dictionaries")
    if model_name is None or folder is None:
        raise CircuitFileError(f"{circuit}: settings name no model or dictionaries; pass them")
    metric = recorded_metric(circuit, settings)
    attribution = _recorded_attribution(circuit, settings)
    aggregation = attribution.aggregation
    if curve is not None:
        require_folder(curve)  # fail before the slow part
    precision = precision or settings.get("precision", "float32")
    lm, adapter = load_model(model_name, device=device, precision=precision)
    dicts = load_dictionary_set(folder, settings.get("places"), device=device)
    batches = load_prompt_batches(lm.tokenizer, prompts, aggregation=aggregation)
    shapes = {
        place: (d.d_sae,) if aggregation == "sum" else (batches[0].length, d.d_sae)
        for place, d in dicts.items()
    }
    selection = selection_from_circuit(graph, shapes)
    options = {"metric": metric, "ablation": ablation, "errors": errors}
    (score,) = score_selection(lm, adapter, dicts, batches, [selection], **options)
    result: dict[str, Any] = {
        "faithfulness": score.faithfulness,
        "completeness": score.completeness,
        "nodes": score.n_nodes,
        "m_full": score.m_full,
        "m_empty": score.m_empty,
        "m_circuit": score.m_circuit,
        "m_complement": score.m_complement,
        "prompts": str(prompts),
        "ablation": ablation,
        "errors": errors,
        "precision": precision_name(adapter.dtype),
        "warnings": [],
    }
    warning = ill_conditioned(score.m_full, score.m_empty)
    if warning is not None:
        warnings.warn(warning, CircuitWarning, stacklevel=2)
        result["warnings"].append(warning)
    scores = graph_scores(graph)
    result.update(replacement_score=scores.replacement, completeness_score=scores.completeness)
    if curve is not None:
        discovery = load_prompt_batches(
            lm.tokenizer, settings.get("prompts", prompts), aggregation=aggregation
        )
        effects = node_effects(lm, adapter, dicts, discovery, metric=metric, config=attribution)
        points = faithfulness_curve(
            lm, adapter, dicts, batches, effects, curve_thresholds(effects), **options
        )
        plot_curve(points, curve, title=f"{Path(circuit).name} on {Path(prompts).name}")
        result["curve"] = [
            {
                "threshold": t,
                "nodes": s.n_nodes,
                "faithfulness": s.faithfulness,
                "completeness": s.completeness,
            }
            for t, s in points
        ]
    return result
