"""SHIFT: remove a classifier's reliance on a spurious signal by ablating the dictionary
features that carry it (Marks et al. 2024, section 4).

1. Pool each text's activations at the probe's place (mean over positions after the first) and
   train a logistic probe for the task on the ambiguous split, where task and spurious
   attribute are perfectly correlated.
2. Attribute the probe's logit to the features at every place with a dictionary up to the
   probe (attribution patching against a zero baseline, summed over positions) and list the
   top features with their top activating contexts, so a person can judge each.
3. Choose features to ablate: a list the user gives, or an automatic judge that marks a
   feature task-irrelevant when its activations separate the spurious concept on a labelled
   concept set in which that concept varies on its own (|AUROC - 0.5| large).
4. Zero-ablate them while pooling again; score the original probe, and a probe retrained on
   the ablated activations, on the balanced split.
5. Baselines on the same evaluation half of the balanced split: the original probe; ablating
   as many random features; a neuron skyline (mean-ablating the probe place's neurons that
   the spurious labels say matter most); an oracle probe trained on the other half.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from circuits.attribution import AttributionConfig, node_effects
from circuits.metrics import ProbeLogit
from circuits.prompts import PromptBatch
from dictionaries import Dictionary

from .interventions import FeatureAblation, intervene
from .probe import (
    LinearProbe,
    group_accuracies,
    pooled_activations,
    pooled_activations_at,
    train_probe,
)

__all__ = [
    "FeatureRef",
    "ShiftConfig",
    "auroc",
    "plot_results",
    "pooled_features",
    "run_shift",
]

FeatureRef = tuple[str, int]
"""``(place, feature id)``."""


@dataclass
class ShiftConfig:
    place: str
    """Where the probe reads (mean-pooled), e.g. ``resid.12``."""
    candidates: int = 64
    """Top features by |attribution| that are listed and judged."""
    judge_threshold: float = 0.2
    """The judge ablates a feature when ``|AUROC - 0.5| * 2`` on the concept set reaches this."""
    probe_epochs: int = 300
    probe_weight_decay: float = 1e-2
    batch_size: int = 16
    seed: int = 0


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count half)."""
    scores, labels = scores.double(), labels.bool()
    ranks = torch.empty_like(scores)
    order = scores.argsort()
    sorted_scores = scores[order]
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in sorted_scores.unique():  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs both classes")
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _text_batches(tokenizer: Any, texts: Sequence[str]) -> list[PromptBatch]:
    """Texts grouped by token length, as prompt batches without answers (probe metrics)."""
    by_length: dict[int, list[list[int]]] = {}
    for text in texts:
        ids = tokenizer(text).input_ids
        by_length.setdefault(len(ids), []).append(ids)
    return [
        PromptBatch(torch.tensor(rows), torch.zeros(len(rows), dtype=torch.long))
        for _, rows in sorted(by_length.items())
    ]


def pooled_features(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    texts: Sequence[str],
    refs: Sequence[FeatureRef],
    *,
    batch_size: int = 16,
) -> torch.Tensor:
    """``(N, len(refs))``: each text's mean activation (positions after the first) of each
    referenced feature; one partial forward per batch of texts serves every place."""
    wanted: dict[str, list[int]] = {}
    for place, feature in refs:
        wanted.setdefault(place, []).append(feature)

    def encoder(dictionary: Dictionary, features: list[int]):
        return lambda x_BTD: dictionary.encode(x_BTD.to(dictionary.dtype))[..., features]

    encoders = {p: encoder(dictionaries[p], fs) for p, fs in wanted.items()}
    pooled = pooled_activations_at(
        model, adapter, texts, list(wanted), batch_size=batch_size, encoders=encoders
    )
    out = torch.empty(len(texts), len(refs))
    for place in wanted:  # a place's columns hold its features in the order of refs
        out[:, [i for i, (p, _) in enumerate(refs) if p == place]] = pooled[place]
    return out


def _halves(data: list[dict], rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Two halves with the same share of every (label, group) cell, shuffled."""
    first, second = [], []
    for cell in sorted({(d["label"], d["group"]) for d in data}):
        rows = [d for d in data if (d["label"], d["group"]) == cell]
        rng.shuffle(rows)
        first += rows[0::2]
        second += rows[1::2]
    return first, second


def _scores(probe: LinearProbe, X, data) -> dict[str, float]:
    label = torch.tensor([d["label"] for d in data])
    group = torch.tensor([d["group"] for d in data])
    return group_accuracies(probe.predict(X), label, group)


def run_shift(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    train: list[dict],
    test: list[dict],
    config: ShiftConfig,
    *,
    concept: list[dict] | None = None,
    ablate: list[FeatureRef] | None = None,
    retrain: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """The SHIFT table: ``{"methods": {name: {task_acc, spurious_acc, worst_group_acc, ...,
    "ablated": [...]}}, "candidates": [...], "settings": {...}}``."""
    if (concept is None) == (ablate is None):
        raise ValueError("choose features by exactly one of a concept set (--auto) or a list")
    if ablate is not None and not ablate:
        raise ValueError("the ablation list is empty")
    places = [
        p for p in dictionaries if adapter.parse(p).order <= adapter.parse(config.place).order
    ]
    if not places:
        raise ValueError(f"no dictionary at or before the probe place {config.place}")
    dictionaries = {p: dictionaries[p] for p in adapter.sort(places)}
    rng = random.Random(config.seed)
    oracle_train, evaluation = _halves(test, rng)
    probe_options = {"epochs": config.probe_epochs, "weight_decay": config.probe_weight_decay}

    def pool(texts, interventions=()):
        with intervene(adapter, list(interventions)):
            return pooled_activations(
                model, adapter, texts, config.place, batch_size=config.batch_size
            )

    train_texts = [d["text"] for d in train]
    eval_texts = [d["text"] for d in evaluation]
    X_train, X_eval = pool(train_texts), pool(eval_texts)
    y_train = torch.tensor([d["label"] for d in train])
    probe = train_probe(X_train, y_train, seed=config.seed, **probe_options)

    # 2. attribution of the probe logit to features (zero baseline)
    metric = ProbeLogit(config.place, probe.weight, probe.bias, start=1)
    effects = node_effects(
        model, adapter, dictionaries, _text_batches(model.tokenizer, train_texts),
        metric=metric, config=AttributionConfig(batch_size=config.batch_size), progress=progress,
    )  # fmt: skip
    flat = [(p, i, float(e)) for p, t in effects.features.items() for i, e in enumerate(t)]
    flat.sort(key=lambda item: -abs(item[2]))
    candidates = [{"place": p, "feature": i, "effect": e} for p, i, e in flat[: config.candidates]]

    # 3. the features to ablate
    if ablate is None:
        refs = [(c["place"], c["feature"]) for c in candidates]
        concept_texts = [d["text"] for d in concept]
        activations = pooled_features(
            model, adapter, dictionaries, concept_texts, refs, batch_size=config.batch_size
        )
        groups = torch.tensor([d["group"] for d in concept])
        for column, candidate in enumerate(candidates):
            score = auroc(activations[:, column], groups)
            candidate["concept_auroc"] = score
            candidate["judged_spurious"] = abs(score - 0.5) * 2 >= config.judge_threshold
        ablate = [(c["place"], c["feature"]) for c in candidates if c["judged_spurious"]]
        if not ablate:
            raise ValueError("the judge marked no candidate feature as spurious")

    def ablations(refs: list[FeatureRef]):
        by_place: dict[str, list[int]] = {}
        for place, feature in refs:
            by_place.setdefault(place, []).append(feature)
        return [FeatureAblation(p, dictionaries[p], fs) for p, fs in by_place.items()]

    methods: dict[str, dict[str, Any]] = {}
    methods["original"] = {**_scores(probe, X_eval, evaluation), "ablated": []}
    X_train_shift, X_eval_shift = (
        pool(train_texts, ablations(ablate)),
        pool(eval_texts, ablations(ablate)),
    )
    named = [f"{p}:{f}" for p, f in ablate]
    methods["shift"] = {**_scores(probe, X_eval_shift, evaluation), "ablated": named}
    if retrain:
        retrained = train_probe(X_train_shift, y_train, seed=config.seed, **probe_options)
        methods["shift_retrain"] = {
            **_scores(retrained, X_eval_shift, evaluation),
            "ablated": named,
        }
    pool_of = [(p, i) for p, t in dictionaries.items() for i in range(t.d_sae)]
    random_refs = rng.sample(pool_of, len(ablate))
    methods["random"] = {
        **_scores(probe, pool(eval_texts, ablations(random_refs)), evaluation),
        "ablated": [f"{p}:{f}" for p, f in random_refs],
    }
    methods["neuron_skyline"] = _neuron_skyline(probe, X_eval, evaluation, X_train, len(ablate))
    X_oracle = pool([d["text"] for d in oracle_train])
    oracle = train_probe(
        X_oracle, torch.tensor([d["label"] for d in oracle_train]), seed=config.seed,
        **probe_options,
    )  # fmt: skip
    methods["oracle"] = {**_scores(oracle, X_eval, evaluation), "ablated": []}
    return {
        "methods": methods,
        "candidates": candidates,
        "settings": {
            "place": config.place,
            "places": list(dictionaries),
            "candidates": config.candidates,
            "judge": "user list" if concept is None else "concept AUROC",
            "judge_threshold": config.judge_threshold,
            "n_train": len(train),
            "n_eval": len(evaluation),
            "n_oracle_train": len(oracle_train),
            "retrain": retrain,
        },
    }


def _neuron_skyline(probe, X_eval, evaluation, X_train, k: int) -> dict[str, Any]:
    """Mean-ablate the ``k`` neurons of the probe place with the largest |weight x (mean over
    group 1 - mean over group 0)| on the evaluation data: a skyline, since it uses the
    spurious labels of the data it is scored on."""
    group = torch.tensor([d["group"] for d in evaluation]).bool()
    gap = X_eval[group].mean(0) - X_eval[~group].mean(0)
    neurons = (probe.weight * gap).abs().topk(k).indices
    ablated = X_eval.clone()
    ablated[:, neurons] = X_train.mean(0)[neurons]
    return {
        **_scores(probe, ablated, evaluation),
        "ablated": [f"neuron:{n}" for n in neurons.tolist()],
    }


def plot_results(results: dict[str, Any], path: str | Path) -> Path:
    """A grouped bar chart of task, spurious and worst-group accuracy per method (HTML)."""
    import plotly.graph_objects as go

    from dictionaries.files import atomic_path

    methods = list(results["methods"])
    figure = go.Figure()
    for metric in ("task_acc", "spurious_acc", "worst_group_acc"):
        figure.add_trace(
            go.Bar(name=metric, x=methods, y=[results["methods"][m][metric] for m in methods])
        )
    figure.update_layout(barmode="group", yaxis_title="accuracy", yaxis_range=[0, 1],
                         title=f"SHIFT at {results['settings']['place']}")  # fmt: skip
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.write_html(tmp, include_plotlyjs=True)
    return path
