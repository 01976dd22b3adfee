"""SHIFT: remove a classifier's reliance on a spurious signal by ablating the dictionary
features that carry it (Marks et al. 2024, section 4).

1. Pool each text's activations at the probe's place (mean over positions after the first) and
   train a logistic probe for the task on the ambiguous split, where task and spurious
   attribute are perfectly correlated.
2. Attribute the probe's margin (its logit signed by the text's label) to the features at
   every place with a dictionary (an SAE: transcoders are refused) up to the probe:
   attribution patching against a zero baseline, summed over the positions after the first,
   averaged over a label-balanced subset of the training texts. The candidates are the top
   features by |effect| that together carry a set share of all features' |effect|.
3. Choose features to ablate: a list the user gives, or an automatic judge that marks a
   candidate task-irrelevant when its pooled activation separates the spurious concept on a
   labelled concept set in which that concept varies on its own: its AUROC differs from 0.5
   significantly (Bonferroni over the candidates) and by at least a small effect.
4. Zero-ablate them at every place up to the probe (the probe's place included), at the
   positions the dictionaries were trained on, keeping the error; pool again. Score the
   original probe, its intercept recentred so that its mean logit on the (unlabelled)
   training texts is what it was before the ablation, and a probe retrained on the ablated
   activations, on the balanced split.
5. Baselines on the same evaluation half of the balanced split: the original probe; ablating
   as many random features (recentred the same way); a neuron skyline (mean-ablating the
   probe place's neurons that the spurious labels say matter most); an oracle probe trained
   on the other half.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.labels import corpus_labels
from sparse_circuits.circuits.discovery.metrics import ProbeLogit
from sparse_circuits.circuits.model.splice import cast_dictionaries
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.editing.interventions import FeatureAblation, Intervention, intervene
from sparse_circuits.editing.probe import (
    LinearProbe,
    group_accuracies,
    pooled_activations_at,
    train_probe,
)
from sparse_circuits.errors import ConfigError
from sparse_circuits.precision import precision_name

__all__ = [
    "FeatureRef",
    "NoSpuriousFeature",
    "ShiftConfig",
    "auroc",
    "auroc_p_value",
    "candidates_markdown",
    "check_ablation_list",
    "gap_closed",
    "plot_results",
    "pooled_features",
    "results_markdown",
    "run_shift",
    "zero_ablations",
]

FeatureRef = tuple[str, int]
"""``(place, feature id)``."""

SMALL_EFFECT = 0.112
"""``2 |AUROC - 0.5|`` of a small effect: AUROC 0.556 matches Cohen's d = 0.2 (Rice & Harris
2005, "Comparing effect sizes in follow-up studies", Law and Human Behavior 29(5))."""


@dataclass
class ShiftConfig:
    place: str
    """Where the probe reads (mean-pooled), e.g. ``resid.12``."""
    places: tuple[str, ...] | None = None
    """The dictionary places SHIFT attributes to, judges and ablates at, each at or before the
    probe's ``place``; ``None``: every place of the dictionary set up to the probe."""
    attribution_share: float = 0.5
    """The candidates are the fewest top features (by |effect|) whose |effects| add up to this
    share of all features' |effects|: a rule free of the metric's scale, so it reads the same
    for any probe, model or dictionary size."""
    candidates: int | None = None
    """A fixed number of top features to judge instead of ``attribution_share``."""
    attribution_examples: int | None = 256
    """Training texts the attribution averages over (a label-balanced draw); ``None``: all.
    It is the slowest step (one forward and backward pass with every dictionary spliced)."""
    judge_alpha: float = 0.05
    """Family-wise error rate of the judge: a candidate's concept-set AUROC must differ from
    0.5 at two-sided p < ``judge_alpha / n_candidates`` (Bonferroni)."""
    judge_threshold: float = SMALL_EFFECT
    """...and ``2 |AUROC - 0.5|`` must reach this (so that a large concept set does not mark
    features that barely lean towards one group)."""
    first_position: int = 1
    """Features are ablated from this position on. The first position is the attention sink:
    the probe does not pool it and dictionaries are trained without it
    (``ActivationConfig.exclude_first``), so their features there mean nothing."""
    recentre: bool = True
    """Score the original probe after an ablation with its intercept shifted so that its mean
    logit on the training texts is unchanged (no labels used): ablating many features moves
    every text's logit alike, which says nothing about the task but flips the threshold."""
    label_tokens: int = 4096
    """Corpus tokens scanned for each candidate's top activating contexts, recorded with it
    so that a person can judge it (0: none)."""
    label_corpus: str = "embedded"
    """Corpus the top contexts come from (``circuits.data.corpus.read_documents``)."""
    probe_epochs: int = 300
    """Full-batch Adam steps of each probe's training (``train_probe``)."""
    probe_weight_decay: float = 1e-2
    """L2 penalty of the probes, on their standardised weights."""
    batch_size: int = 16
    """Texts per forward pass."""
    seed: int = 0
    """Seeds the probes, the split of the balanced set and the random baseline."""

    def __post_init__(self) -> None:
        if self.places is not None:
            self.places = tuple(self.places)
            if not self.places:
                raise ConfigError("places must name at least one place (None: all)")
        if not 0 < self.attribution_share <= 1:
            raise ConfigError(f"attribution_share must be in (0, 1], not {self.attribution_share}")
        if self.candidates is not None and self.candidates < 1:
            raise ConfigError(f"candidates must be positive, not {self.candidates}")
        if self.attribution_examples is not None and self.attribution_examples < 2:
            raise ConfigError("attribution_examples must be at least 2 (one of each label)")
        if not 0 < self.judge_alpha <= 1:
            raise ConfigError(f"judge_alpha must be in (0, 1], not {self.judge_alpha}")
        if not 0 <= self.judge_threshold <= 1:
            raise ConfigError(f"judge_threshold must be in [0, 1], not {self.judge_threshold}")
        if self.label_tokens < 0:
            raise ConfigError(f"label_tokens must be >= 0, not {self.label_tokens}")
        if self.first_position < 0:
            raise ConfigError(f"first_position must be >= 0, not {self.first_position}")


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count half): the
    Mann-Whitney U statistic from the ranks, tied scores sharing their average rank."""
    scores, labels = scores.double(), labels.bool()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs both classes")
    sorted_scores, order = scores.sort()
    _, inverse, counts = sorted_scores.unique_consecutive(return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of each run of ties' last member
    average = last - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = average[inverse]
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auroc_p_value(score: float, positives: int, negatives: int) -> float:
    """Two-sided p-value of an AUROC against 0.5 (no association): the Mann-Whitney U test in
    its normal approximation. Without the tie correction the null variance is at its largest,
    so with tied scores (features that stay at zero) the test is conservative."""
    variance = (positives + negatives + 1) / (12 * positives * negatives)
    return math.erfc(abs(score - 0.5) / math.sqrt(2 * variance))


def _text_batches(tokenizer: Any, texts: Sequence[str]) -> list[PromptBatch]:
    """Texts grouped by token length, as prompt batches without answers (probe metrics);
    ``indices`` are the texts' positions in ``texts``."""
    by_length: dict[int, list[int]] = {}
    ids = [tokenizer(text).input_ids for text in texts]
    for index, row in enumerate(ids):
        by_length.setdefault(len(row), []).append(index)
    return [
        PromptBatch(
            torch.tensor([ids[i] for i in rows]),
            torch.zeros(len(rows), dtype=torch.long),
            indices=rows,
        )
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


class _ProbeMargin(ProbeLogit):
    """The probe's logit signed by each text's label, ``(2 y - 1) * logit``: a feature that
    helps the probe tell the labels apart moves it the same way in every text, while one that
    moves every text's logit alike (a feature on in all texts) cancels out over a
    label-balanced set. Ranked by the plain logit such features come first."""

    def __init__(self, place: str, probe: LinearProbe, signs_N: torch.Tensor, *, start: int):
        super().__init__(place, probe.weight, probe.bias, start=start)
        self.signs_N = signs_N

    def __call__(self, model: Any, adapter: Any, batch: PromptBatch) -> torch.Tensor:
        logit_B = super().__call__(model, adapter, batch)
        return logit_B * self.signs_N[batch.indices].to(logit_B)


@dataclass
class _FromPosition(Intervention):
    """Another intervention, applied only at positions ``>= first``."""

    inner: Intervention
    first: int

    def __post_init__(self) -> None:
        self.place = self.inner.place

    def apply(self, x_BTD: torch.Tensor, positions_BT: torch.Tensor) -> torch.Tensor:
        edited_BTD = self.inner.apply(x_BTD, positions_BT)
        before_BT1 = (positions_BT < self.first)[..., None]
        return torch.where(before_BT1, x_BTD, edited_BTD)


def zero_ablations(
    dictionaries: Mapping[str, Dictionary], refs: Sequence[FeatureRef], *, first: int
) -> list[Intervention]:
    """SHIFT's edit: zero-ablate the features ``refs`` (the error kept), at positions
    ``>= first``; one intervention per place."""
    by_place: dict[str, list[int]] = {}
    for place, feature in refs:
        by_place.setdefault(place, []).append(feature)
    return [
        _FromPosition(FeatureAblation(p, dictionaries[p], fs), first) for p, fs in by_place.items()
    ]


def _pool(
    model: Any,
    adapter: Any,
    texts: Sequence[str],
    place: str,
    interventions: Sequence[Intervention] = (),
    *,
    batch_size: int,
    read: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``(N, k)`` pooled ``read(x_BTD)`` at ``place`` (``k = d_model`` without ``read``: the
    activations) with ``interventions`` in force. Those upstream act as hooks; those at
    ``place`` itself edit what is read there before pooling, since a hook's edit does not reach
    the trace's read at its own place (see ``editing.interventions``)."""
    here = [i for i in interventions if i.place == place]

    def edit(x_BTD: torch.Tensor) -> torch.Tensor:
        positions_BT = torch.arange(x_BTD.shape[1], device=x_BTD.device).expand(x_BTD.shape[:2])
        for intervention in here:
            x_BTD = intervention.apply(x_BTD, positions_BT)
        return x_BTD if read is None else read(x_BTD)

    with intervene(adapter, [i for i in interventions if i.place != place]):
        return pooled_activations_at(
            model, adapter, texts, [place], batch_size=batch_size,
            encoders={place: edit} if here or read else None,
        )[place]  # fmt: skip


def _balanced_draw(data: list[dict], n: int | None, rng: random.Random) -> list[int]:
    """Indices of up to ``n`` examples, as many of each label as possible (all: ``None``)."""
    if n is None or n >= len(data):
        return list(range(len(data)))
    by_label: dict[int, list[int]] = {}
    for index, d in enumerate(data):
        by_label.setdefault(d["label"], []).append(index)
    chosen: list[int] = []
    quota = n // len(by_label)
    for label in sorted(by_label):
        rows = by_label[label]
        chosen += rng.sample(rows, min(quota, len(rows)))
    return sorted(chosen)


def _attribute(
    model, adapter, dictionaries, probe: LinearProbe, data: list[dict], config: ShiftConfig,
    *, progress: bool,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """``place -> (d_sae,)``: each feature's effect on the probe's margin when set to zero,
    summed over positions ``>= first_position`` and averaged over ``data``."""
    signs_N = torch.tensor([2.0 * d["label"] - 1 for d in data])
    metric = _ProbeMargin(config.place, probe, signs_N, start=1)
    settings = AttributionConfig(batch_size=config.batch_size, aggregation="none")
    totals = {p: torch.zeros(d.d_sae) for p, d in dictionaries.items()}
    batches = _text_batches(model.tokenizer, [d["text"] for d in data])
    for batch in tqdm(batches, desc="attribution", disable=not progress):  # one token length each
        effects = node_effects(
            model, adapter, dictionaries, [batch], metric=metric, config=settings, progress=False
        )
        for place, effect_TF in effects.features.items():
            totals[place] += effect_TF[config.first_position :].sum(0) * len(batch)
    return {p: t / len(data) for p, t in totals.items()}


def _candidates(effects: Mapping[str, torch.Tensor], config: ShiftConfig) -> list[dict]:
    """The top features by |effect|: ``config.candidates`` of them, or the fewest whose |effects|
    reach ``attribution_share`` of the total."""
    flat = [(p, i, float(e)) for p, t in effects.items() for i, e in enumerate(t)]
    flat.sort(key=lambda item: -abs(item[2]))
    if config.candidates is not None:
        count = config.candidates
    else:
        total = sum(abs(e) for *_, e in flat)
        running, count = 0.0, 0
        while count < len(flat) and running < config.attribution_share * total:
            running += abs(flat[count][2])
            count += 1
    return [{"place": p, "feature": i, "effect": e} for p, i, e in flat[: max(count, 1)]]


def _label(model, adapter, dictionaries, candidates: list[dict], config: ShiftConfig, *, progress):
    """Give each candidate its top activating corpus contexts (``top_contexts``, in place)."""
    keys = [(c["place"], c["feature"], -1) for c in candidates]
    hits = corpus_labels(
        model, adapter, dictionaries, keys,
        tokens=config.label_tokens, corpus=config.label_corpus, progress=progress,
    )  # fmt: skip
    for key, candidate in zip(keys, candidates, strict=True):
        candidate["top_contexts"] = [
            {"activation": round(h["activation"], 3), "text": h["text"]} for h in hits.get(key, [])
        ]


def _judge(
    model, adapter, dictionaries, candidates: list[dict], concept: list[dict], config: ShiftConfig
) -> dict[str, Any]:
    """Mark each candidate (``concept_auroc``, ``concept_p``, ``judged_spurious``, in place);
    returns the judge's settings."""
    refs = [(c["place"], c["feature"]) for c in candidates]
    texts = [d["text"] for d in concept]
    activations = pooled_features(
        model, adapter, dictionaries, texts, refs, batch_size=config.batch_size
    )
    groups = torch.tensor([d["group"] for d in concept])
    positives, negatives = int(groups.sum()), int((1 - groups).sum())
    level = config.judge_alpha / len(candidates)  # Bonferroni
    for column, candidate in enumerate(candidates):
        score = auroc(activations[:, column], groups)
        p_value = auroc_p_value(score, positives, negatives)
        candidate["concept_auroc"] = score
        candidate["concept_p"] = p_value
        candidate["judged_spurious"] = (
            p_value < level and abs(score - 0.5) * 2 >= config.judge_threshold
        )
    return {
        "statistic": "AUROC of the candidate's pooled activation for the concept's group on the "
        "concept set; two-sided Mann-Whitney p-value (normal approximation)",
        "alpha": config.judge_alpha,
        "p_below": level,
        "min_effect_2|auroc-0.5|": config.judge_threshold,
        "n_concept": len(concept),
    }


class NoSpuriousFeature(ValueError):
    """The judge marked none of the candidates; ``candidates`` holds them, judged and labelled,
    for a person to choose from."""

    def __init__(self, candidates: list[dict]):
        super().__init__(
            f"the judge marked none of the {len(candidates)} candidate features as spurious"
        )
        self.candidates = candidates


def check_ablation_list(
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    place: str,
    refs: Sequence[FeatureRef],
    *,
    places: Sequence[str] | None = None,
    source: str | Path | None = None,
) -> None:
    """Raise ``ValueError`` unless ``refs`` is non-empty and names each of its features once, of
    a dictionary at or before the probe's ``place`` (and at one of ``places``, when given); the
    message starts with ``source`` (the file the list was read from) when given."""

    def refuse(problem: str) -> ValueError:
        return ValueError(problem if source is None else f"{source}: {problem}")

    if not refs:
        raise refuse("the ablation list is empty")
    probe_order = adapter.parse(place).order
    seen: set[FeatureRef] = set()
    for at, feature in refs:
        name = f"{at}:{feature}"
        if at not in dictionaries:
            raise refuse(f"cannot ablate {name}: no dictionary for {at}")
        if adapter.parse(at).order > probe_order:
            raise refuse(f"cannot ablate {name}: {at} comes after the probe place {place}")
        if places is not None and at not in places:
            raise refuse(f"cannot ablate {name}: {at} is not one of the places {list(places)}")
        if not 0 <= feature < dictionaries[at].d_sae:
            raise refuse(
                f"cannot ablate {name}: feature {feature} is beyond the dictionary at {at} "
                f"(d_sae = {dictionaries[at].d_sae})"
            )
        if (at, feature) in seen:
            raise refuse(f"{name} is listed twice in the ablation list")
        seen.add((at, feature))


def _dictionaries_up_to(
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    place: str,
    places: Sequence[str] | None = None,
) -> dict[str, Dictionary]:
    """The dictionaries at or before the probe's ``place`` (only those of ``places`` when
    given, each of which must be such a place), in model order; all must be SAEs (a
    transcoder's features are computed from another place than the one they write)."""
    probe_order = adapter.parse(place).order
    if places is None:
        places = [p for p in dictionaries if adapter.parse(p).order <= probe_order]
    for at in places:
        if at not in dictionaries:
            raise ValueError(f"places: no dictionary for {at}")
        if adapter.parse(at).order > probe_order:
            raise ValueError(f"places: {at} comes after the probe place {place}")
    if not places:
        raise ValueError(f"no dictionary at or before the probe place {place}")
    for at in places:
        if dictionaries[at].config.is_transcoder:
            raise ValueError(f"SHIFT ablates SAE features; {at} holds a transcoder")
    return {p: dictionaries[p] for p in adapter.sort(list(dict.fromkeys(places)))}


def _recentred(probe: LinearProbe, X_before: torch.Tensor, X_after: torch.Tensor):
    """``probe`` with its intercept moved so that its mean logit over ``X_after`` equals its
    mean logit over ``X_before``, and the move."""
    offset = float(probe(X_before).mean() - probe(X_after).mean())
    return LinearProbe(probe.weight, probe.bias + offset, probe.meta), offset


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
    ablation_source: str | Path | None = None,
    retrain: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """The SHIFT table: ``{"methods": {name: {task_acc, spurious_acc, worst_group_acc, ...,
    "ablated": [...]}}, "candidates": [...], "settings": {...}}``. The ablation list and the
    dictionaries are checked before any model pass (errors in the list name
    ``ablation_source``, the file it was read from, when given); ``NoSpuriousFeature``
    (carrying the candidates) when the judge marks none."""
    if (concept is None) == (ablate is None):
        raise ValueError("choose features by exactly one of a concept set (--auto) or a list")
    if ablate is not None:
        check_ablation_list(
            adapter, dictionaries, config.place, ablate, places=config.places,
            source=ablation_source,
        )  # fmt: skip
    # in the model's dtype once, for every pass below (attribution, judge, ablations)
    dictionaries = cast_dictionaries(
        _dictionaries_up_to(adapter, dictionaries, config.place, config.places), adapter.dtype
    )
    rng = random.Random(config.seed)
    oracle_train, evaluation = _halves(test, rng)
    probe_options = {"epochs": config.probe_epochs, "weight_decay": config.probe_weight_decay}

    def pool(texts, interventions=()):
        return _pool(
            model, adapter, texts, config.place, interventions, batch_size=config.batch_size
        )

    # 1. the probe
    train_texts = [d["text"] for d in train]
    eval_texts = [d["text"] for d in evaluation]
    X_train, X_eval = pool(train_texts), pool(eval_texts)
    y_train = torch.tensor([d["label"] for d in train])
    probe = train_probe(X_train, y_train, seed=config.seed, **probe_options)

    # 2. attribution and candidates
    attribution_rows = _balanced_draw(train, config.attribution_examples, rng)
    effects = _attribute(
        model, adapter, dictionaries, probe, [train[i] for i in attribution_rows], config,
        progress=progress,
    )  # fmt: skip
    candidates = _candidates(effects, config)
    if config.label_tokens:
        _label(model, adapter, dictionaries, candidates, config, progress=progress)

    # 3. the features to ablate
    judge: dict[str, Any] = {"statistic": "user list"}
    if ablate is None:
        judge = _judge(model, adapter, dictionaries, candidates, concept, config)
        ablate = [(c["place"], c["feature"]) for c in candidates if c["judged_spurious"]]
        if not ablate:
            raise NoSpuriousFeature(candidates)

    def ablations(refs: list[FeatureRef]) -> list[Intervention]:
        return zero_ablations(dictionaries, refs, first=config.first_position)

    def ablated_scores(refs: list[FeatureRef], X_train_ablated, X_eval_ablated):
        raw = _scores(probe, X_eval_ablated, evaluation)
        named = [f"{p}:{f}" for p, f in refs]
        if not config.recentre:
            return {**raw, "ablated": named}
        recentred, offset = _recentred(probe, X_train, X_train_ablated)
        scores = _scores(recentred, X_eval_ablated, evaluation)
        kept = {k: raw[k] for k in ("task_acc", "spurious_acc", "worst_group_acc")}
        return {**scores, "intercept_offset": offset, "not_recentred": kept, "ablated": named}

    # 4. SHIFT
    methods: dict[str, dict[str, Any]] = {}
    methods["original"] = {**_scores(probe, X_eval, evaluation), "ablated": []}
    X_train_shift = pool(train_texts, ablations(ablate))
    X_eval_shift = pool(eval_texts, ablations(ablate))
    methods["shift"] = ablated_scores(ablate, X_train_shift, X_eval_shift)
    if retrain:
        retrained = train_probe(X_train_shift, y_train, seed=config.seed, **probe_options)
        methods["shift_retrain"] = {
            **_scores(retrained, X_eval_shift, evaluation),
            "ablated": methods["shift"]["ablated"],
        }

    # 5. baselines
    pool_of = [(p, i) for p, t in dictionaries.items() for i in range(t.d_sae)]
    random_refs = rng.sample(pool_of, len(ablate))
    X_train_random = pool(train_texts, ablations(random_refs)) if config.recentre else None
    X_eval_random = pool(eval_texts, ablations(random_refs))
    methods["random"] = ablated_scores(random_refs, X_train_random, X_eval_random)
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
            "attribution": {
                "metric": "probe margin (logit signed by label), zero baseline, attrib",
                "positions": f">= {config.first_position}",
                "n_examples": len(attribution_rows),
                "share": None if config.candidates is not None else config.attribution_share,
                "n_candidates": len(candidates),
            },
            "judge": judge,
            "ablation": {
                "mode": "zero, error kept",
                "positions": f">= {config.first_position}",
                "n_features": len(ablate),
                "recentred_intercept": config.recentre,
            },
            "n_train": len(train),
            "n_eval": len(evaluation),
            "n_oracle_train": len(oracle_train),
            "retrain": retrain,
            "seed": config.seed,
            "precision": precision_name(adapter.dtype),
        },
    }


def _neuron_skyline(probe, X_eval, evaluation, X_train, k: int) -> dict[str, Any]:
    """Mean-ablate the ``k`` neurons (at most all of them) of the probe place with the largest
    |weight x (mean over group 1 - mean over group 0)| on the evaluation data: a skyline,
    since it uses the spurious labels of the data it is scored on."""
    group = torch.tensor([d["group"] for d in evaluation]).bool()
    gap = X_eval[group].mean(0) - X_eval[~group].mean(0)
    neurons = (probe.weight * gap).abs().topk(min(k, len(gap))).indices
    ablated = X_eval.clone()
    ablated[:, neurons] = X_train.mean(0)[neurons]
    return {
        **_scores(probe, ablated, evaluation),
        "ablated": [f"neuron:{n}" for n in neurons.tolist()],
    }


def plot_results(results: dict[str, Any], path: str | Path) -> Path:
    """A grouped bar chart of task, spurious and worst-group accuracy per method (HTML), the
    value on each bar and chance (0.5) marked."""
    import plotly.graph_objects as go

    from sparse_circuits.files import atomic_path

    methods = list(results["methods"])
    names = {
        "task_acc": "task accuracy",
        "spurious_acc": "spurious accuracy (tracks the group)",
        "worst_group_acc": "worst-group accuracy",
    }
    figure = go.Figure()
    for metric, name in names.items():
        values = [results["methods"][m][metric] for m in methods]
        figure.add_trace(go.Bar(name=name, x=methods, y=values, text=[f"{v:.2f}" for v in values]))
    figure.add_hline(y=0.5, line_dash="dot", annotation_text="chance", line_color="gray")
    n_ablated = len(results["methods"]["shift"]["ablated"])
    figure.update_layout(
        barmode="group", yaxis_title="accuracy on the balanced split", yaxis_range=[0, 1.05],
        title=f"SHIFT: probe at {results['settings']['place']}, {n_ablated} features ablated",
        width=1000, height=520, legend={"orientation": "h", "y": -0.12},
        template="plotly_white",
    )  # fmt: skip
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.write_html(tmp, include_plotlyjs=True)
    return path


METHOD_NAMES = {
    "original": "original probe",
    "shift": "SHIFT",
    "shift_retrain": "SHIFT + retrained probe",
    "random": "random features",
    "neuron_skyline": "neuron skyline",
    "oracle": "oracle probe",
}


def gap_closed(results: dict[str, Any], method: str, *, metric: str = "worst_group_acc") -> float:
    """The share of the gap between the original probe and the oracle that ``method`` closes,
    ``(acc - original) / (oracle - original)`` in ``metric``; NaN when there is no gap."""
    methods = results["methods"]
    original, oracle = methods["original"][metric], methods["oracle"][metric]
    if oracle == original:
        return float("nan")
    return (methods[method][metric] - original) / (oracle - original)


def results_markdown(results: dict[str, Any]) -> str:
    """The SHIFT table as Markdown: per method its worst-group, task (overall) and spurious
    accuracy, the share of the worst-group gap to the oracle it closes, and how many features
    (or neurons) it ablated."""
    lines = [
        "| method | worst group | task acc. | spurious acc. | gap closed | ablated |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for method, scores in results["methods"].items():
        closed = "" if method in ("original", "oracle") else f"{gap_closed(results, method):.2f}"
        lines.append(
            f"| {METHOD_NAMES.get(method, method)} | {scores['worst_group_acc']:.3f} | "
            f"{scores['task_acc']:.3f} | {scores['spurious_acc']:.3f} | {closed} | "
            f"{len(scores['ablated'])} |"
        )
    return "\n".join(lines) + "\n"


def candidates_markdown(results: dict[str, Any], *, contexts: int = 3) -> str:
    """The attributed candidates as a Markdown table, for a person to judge: effect on the
    probe's margin, the judge's concept-set AUROC and verdict, whether SHIFT ablated it, and
    its top activating contexts. ``results`` may hold only ``candidates`` (then none is
    ablated)."""
    ablated = set(results["methods"]["shift"]["ablated"]) if "methods" in results else set()
    lines = [
        "| feature | effect | concept AUROC | judged spurious | ablated | top contexts |",
        "|---|--:|--:|:-:|:-:|---|",
    ]
    for c in results["candidates"]:
        name = f"{c['place']}:{c['feature']}"
        score = f"{c['concept_auroc']:.2f}" if "concept_auroc" in c else ""
        judged = {True: "yes", False: "no"}.get(c.get("judged_spurious"), "")
        texts = " / ".join(h["text"] for h in c.get("top_contexts", [])[:contexts])
        texts = texts.replace("|", "\\|")
        lines.append(
            f"| {name} | {c['effect']:+.4f} | {score} | {judged} | "
            f"{'yes' if name in ablated else 'no'} | {texts} |"
        )
    return "\n".join(lines) + "\n"
