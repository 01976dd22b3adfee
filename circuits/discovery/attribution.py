"""Node effects: how much each feature and each error node moves the metric when patched from
its clean to its patch value (Marks et al. 2024, section 2.2).

For every batch of prompts:

1. Run clean and patch prompts with every dictionary spliced; keep features ``f`` and errors
   ``e`` at every place, aligned on the clean positions (patch = 0 without patch prompts).
2. Score every node, by the chosen method:
   - ``attrib``: one backward pass of the clean run: ``(f_patch - f_clean) * dm/df``; an error
     node's effect is contracted over the model dimension, ``sum_d (e_patch - e_clean) * dm/de``.
   - ``ig``: per place, interpolate ``(1 - a) * clean + a * patch`` for ``a = 0, 1/steps, ...,
     (steps - 1)/steps`` (all steps in one batch), average ``dm/df`` and ``dm/de`` over the path,
     multiply by the deltas (the paper's reference code). The blocks upstream of the place are
     skipped: their cached outputs stand in.
   - ``exact``: patch each node alone (one extra forward row per node, batched, upstream
     skipped) and measure the metric's change; nodes whose clean and patch values agree are
     exactly 0 and not run.
   ``ig`` and ``exact`` splice one place at a time and move its error by its delta from the
   run's own error (equal to the clean one, except at a cross-layer transcoder's ``mlp.M``,
   where a layer spliced alone leaves the earlier layers' writes in its error). A feature of
   a cross-layer transcoder's layer N writes ``mlp.N`` and every later ``mlp.M``: patching it
   changes all those writes at once, the model computing the rest (``circuits.model.splice``);
   spliced alone, the layer still writes the later places.
3. Aggregate: ``sum`` adds effects over positions, ``none`` keeps them per position; both are
   averaged over examples.

Under bfloat16 the passes run in the model's dtype; gradients are cast to float32 before they
meet the (float32) deltas, so every product, mean over steps and sum is float32, and so are
the effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.discovery.metrics import LogitDiff, Metric
from sparse_circuits.circuits.discovery.nodes import Aggregation, NodeEffects
from sparse_circuits.circuits.model.runner import BatchCache, PlaceValues, Runner
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.errors import ConfigError

__all__ = ["METHODS", "AttributionConfig", "NodeEffects", "node_effects"]

Method = Literal["attrib", "ig", "exact"]


@dataclass
class AttributionConfig:
    """How ``node_effects`` scores nodes."""

    method: Method = "attrib"
    """How node effects are computed: first-order (attrib), integrated gradients (ig) or by
    patching each node (exact, slow: the ground truth)."""
    steps: int = 10
    """Integration steps for ``ig`` (the paper uses 10)."""
    aggregation: Aggregation = "sum"
    """``sum`` over positions, or ``none`` (per position; prompts of equal length)."""
    batch_size: int = 16
    """Examples per forward pass."""
    exact_rows: int = 256
    """``exact``: forward rows (nodes x examples) per pass."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.aggregation not in get_args(Aggregation):
            choices = " or ".join(get_args(Aggregation))
            raise ConfigError(f"aggregation must be {choices}, got {self.aggregation!r}")
        for name in ("steps", "batch_size", "exact_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


def _reduce(effect_BT: torch.Tensor, aggregation: Aggregation) -> torch.Tensor:
    """``(B, T, ...)`` -> summed over examples: ``(...)`` (``sum``) or ``(T, ...)``."""
    summed = effect_BT.sum(0)
    return summed.sum(0) if aggregation == "sum" else summed


class BatchEffects(NamedTuple):
    """One batch's node effects, per place ``(B, T, F)`` features and ``(B, T)`` error, and
    the clean run's total gradients ``dm/d(output)`` per place when the method computed them
    (``attrib``; the edge pass reuses them)."""

    effects: dict[str, tuple[torch.Tensor, torch.Tensor]]
    totals: dict[str, torch.Tensor] | None = None


def _attrib_batch(runner: Runner, batch: PromptBatch, clean, values, config) -> BatchEffects:
    leaves = [t for sp in clean.places.values() for t in (sp.features, sp.error)]
    grads = torch.autograd.grad(clean.metric.sum(), leaves)
    effects, totals = {}, {}
    for i, place in enumerate(clean.places):
        v: PlaceValues = values[place]
        grad_f, grad_e = grads[2 * i].float(), grads[2 * i + 1].float()
        effects[place] = (
            v.delta_features * grad_f,
            (v.delta_error * grad_e).sum(-1),
        )
        # a spliced place writes decode(f) + error: the error's gradient is the output's
        totals[place] = grad_e.detach()
    return BatchEffects(effects, totals)


def _ig_place(runner: Runner, batch: PromptBatch, place: str, v: PlaceValues, steps: int):
    """``(B, T, F)`` and ``(B, T)`` integrated-gradient effects at one place."""
    layer = runner.adapter.parse(place).layer
    upstream = runner.upstream_cache(batch.clean_ids, max(layer, 0))
    B = len(batch)
    a_S = (torch.arange(steps, device=v.clean_features.device) / steps).view(steps, 1, 1, 1)

    def path(clean: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        """``(steps * B, T, ...)`` rows ``(1 - a) * clean + a * patch``, in float32 until
        they are cast to the model's dtype."""
        rows = (1 - a_S) * clean.float() + a_S * patch.float()
        return rows.flatten(0, 1).to(clean.dtype).requires_grad_(True)

    f_rows = path(v.clean_features, v.patch_features)
    e_rows = path(v.clean_error, v.patch_error)
    e_clean = v.clean_error.repeat(steps, 1, 1)
    run = runner.run(
        batch.clean_ids.repeat(steps, 1),
        batch.tile(steps),
        places=[place],
        grad=True,
        edit_features=lambda _, __: f_rows,
        edit_error=lambda _, error: error + (e_rows - e_clean),
        upstream=[u.repeat(steps, 1, 1) for u in upstream],
    )
    grad_f, grad_e = (g.float() for g in torch.autograd.grad(run.metric.sum(), [f_rows, e_rows]))
    mean_grad_f = grad_f.view(steps, B, *grad_f.shape[1:]).mean(0)
    mean_grad_e = grad_e.view(steps, B, *grad_e.shape[1:]).mean(0)
    return v.delta_features * mean_grad_f, (v.delta_error * mean_grad_e).sum(-1)


def _ig_batch(runner: Runner, batch: PromptBatch, clean, values, config) -> BatchEffects:
    return BatchEffects(
        {place: _ig_place(runner, batch, place, values[place], config.steps) for place in values}
    )


def _exact_place(runner: Runner, batch, place, v: PlaceValues, clean_metric, config):
    """Patch each node of one place alone; ``(B, T, F)`` and ``(B, T)`` effects (with
    ``sum`` the whole effect sits at position 0)."""
    B, T, F = v.clean_features.shape
    per_position = config.aggregation == "none"
    changed_BTF = v.delta_features != 0
    # nodes: (feature or -1 for the error, position or -1 for all positions)
    if per_position:
        feature_nodes = changed_BTF.any(0).nonzero().tolist()  # [t, f]
        nodes = [(f, t) for t, f in feature_nodes] + [(-1, t) for t in range(T)]
    else:
        nodes = [(f, -1) for f in changed_BTF.any(0).any(0).nonzero().squeeze(-1).tolist()]
        nodes.append((-1, -1))
    layer = runner.adapter.parse(place).layer
    upstream = runner.upstream_cache(batch.clean_ids, max(layer, 0))
    effect_f = torch.zeros(B, T, F)
    effect_e = torch.zeros(B, T)
    chunk = max(1, config.exact_rows // B)
    for start in range(0, len(nodes), chunk):
        group = nodes[start : start + chunk]
        G = len(group)
        f_rows = v.clean_features.repeat(G, 1, 1).view(G, B, T, F).clone()
        e_rows = v.clean_error.repeat(G, 1, 1).view(G, B, T, -1).clone()
        for j, (feature, position) in enumerate(group):
            at = slice(None) if position < 0 else slice(position, position + 1)
            if feature < 0:
                e_rows[j, :, at] = v.patch_error[:, at]
            else:
                f_rows[j, :, at, feature] = v.patch_features[:, at, feature]
        f_rows = f_rows.flatten(0, 1)
        e_delta = e_rows.flatten(0, 1) - v.clean_error.repeat(G, 1, 1)
        run = runner.run(
            batch.clean_ids.repeat(G, 1),
            batch.tile(G),
            places=[place],
            edit_features=lambda _, __, f=f_rows: f,
            edit_error=lambda _, error, e=e_delta: error + e,
            upstream=[u.repeat(G, 1, 1) for u in upstream],
        )
        change_GB = (run.metric.view(G, B) - clean_metric).cpu()
        for j, (feature, position) in enumerate(group):
            t = max(position, 0)
            if feature < 0:
                effect_e[:, t] = change_GB[j]
            else:
                effect_f[:, t, feature] = change_GB[j]
    return effect_f, effect_e


def _exact_batch(runner: Runner, batch: PromptBatch, clean, values, config) -> BatchEffects:
    return BatchEffects(
        {
            place: _exact_place(runner, batch, place, values[place], clean.metric, config)
            for place in values
        }
    )


METHODS = {"attrib": _attrib_batch, "ig": _ig_batch, "exact": _exact_batch}
"""Method name -> the function scoring one batch's nodes (``AttributionConfig.method``)."""


def node_effects(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    batches: list[PromptBatch],
    *,
    metric: Metric | None = None,
    config: AttributionConfig | None = None,
    cache: list[BatchCache] | None = None,
    progress: bool = True,
) -> NodeEffects:
    """Effects of every feature and error node at every place with a dictionary.

    ``cache``, a list, receives one ``BatchCache`` per batch of ``config.batch_size``
    examples, for ``edge_effects(..., cache=...)`` on the same batches."""
    config = config or AttributionConfig()
    runner = Runner(model, adapter, dictionaries, metric or LogitDiff())
    features: dict[str, torch.Tensor] = {}
    errors: dict[str, torch.Tensor] = {}
    activations: dict[str, torch.Tensor] = {}
    n, metric_clean, metric_patch = 0, 0.0, 0.0
    chunks = [piece for batch in batches for piece in batch.split(config.batch_size)]
    for batch in tqdm(chunks, desc=f"nodes ({config.method})", disable=not progress):
        clean, patch, values = runner.clean_and_patch(batch, grad=config.method == "attrib")
        result = METHODS[config.method](runner, batch, clean, values, config)
        if cache is not None:
            stored = {place: v.stored() for place, v in values.items()}
            totals = (
                None
                if result.totals is None
                else {p: t.float().cpu() for p, t in result.totals.items()}
            )
            cache.append(BatchCache(stored, totals))
        for place, (effect_f, effect_e) in result.effects.items():
            f_sum = _reduce(effect_f.detach().float().cpu(), config.aggregation)
            e_sum = _reduce(effect_e.detach().float().cpu(), config.aggregation)
            act = _reduce(values[place].clean_features.float().cpu(), config.aggregation)
            features[place] = features.get(place, 0) + f_sum
            errors[place] = errors.get(place, 0) + e_sum
            activations[place] = activations.get(place, 0) + act
        n += len(batch)
        metric_clean += float(clean.metric.detach().sum())
        if patch is not None:
            metric_patch += float(patch.metric.sum())
    return NodeEffects(
        features={p: t / n for p, t in features.items()},
        errors={p: t / n for p, t in errors.items()},
        aggregation=config.aggregation,
        method=config.method,
        n_examples=n,
        metric_clean=metric_clean / n,
        metric_patch=metric_patch / n,
        activations={p: t / n for p, t in activations.items()},
    )
