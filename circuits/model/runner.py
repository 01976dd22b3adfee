"""One spliced forward pass of a batch, as every attribution method needs it.

``Runner.run`` traces the model on token ids with dictionaries spliced in, optionally skipping
the blocks upstream of the interesting places (their cached outputs stand in), and returns the
spliced places and the metric. ``Runner.clean_and_patch`` gives the feature and error values of
a batch's clean and patch prompts, aligned position by position. A ``BatchCache`` keeps what a
node pass computed for a batch (those values, and the clean total gradients) so that the edge
pass of the same batch does not compute it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nnsight
import torch

from sparse_circuits.circuits.data.prompts import PromptBatch, align_patch
from sparse_circuits.circuits.discovery.metrics import Metric
from sparse_circuits.circuits.model.activations import collect_activations
from sparse_circuits.circuits.model.adapters import ModelAdapter
from sparse_circuits.circuits.model.splice import Edit, SplicedPlace, check_dictionaries, splice
from sparse_circuits.dictionaries import Dictionary

__all__ = ["BatchCache", "PlaceValues", "Runner", "SplicedRun"]


@dataclass
class SplicedRun:
    places: dict[str, SplicedPlace]
    metric: torch.Tensor
    """``(B,)``."""


@dataclass
class PlaceValues:
    """Clean and patch values at one place, aligned on the clean positions ``(B, T, ...)``."""

    clean_features: torch.Tensor
    patch_features: torch.Tensor
    clean_error: torch.Tensor
    patch_error: torch.Tensor

    @property
    def delta_features(self) -> torch.Tensor:
        return self.patch_features - self.clean_features

    @property
    def delta_error(self) -> torch.Tensor:
        return self.patch_error - self.clean_error

    def stored(self) -> PlaceValues:
        """The same values on the CPU, features as sparse COO tensors (most entries are 0)."""
        return PlaceValues(
            self.clean_features.detach().cpu().to_sparse(),
            self.patch_features.detach().cpu().to_sparse(),
            self.clean_error.detach().cpu(),
            self.patch_error.detach().cpu(),
        )

    def loaded(self, device: torch.device) -> PlaceValues:
        """Dense values on ``device`` (inverse of ``stored``)."""

        def dense(t: torch.Tensor) -> torch.Tensor:
            return (t.to_dense() if t.is_sparse else t).to(device)

        return PlaceValues(*(dense(t) for t in vars(self).values()))


@dataclass
class BatchCache:
    """What the node pass computed for one batch and its edge pass needs again."""

    values: dict[str, PlaceValues]
    """Every place's aligned clean and patch values (``PlaceValues.stored``)."""
    totals: dict[str, torch.Tensor] | None = None
    """Each place's total gradient ``dm/d(output) (B, T, D)`` of the clean run, float32 on the
    CPU, when the node pass had it (``attrib``); ``None`` otherwise."""


class Runner:
    def __init__(
        self,
        model: Any,
        adapter: ModelAdapter,
        dictionaries: Mapping[str, Dictionary],
        metric: Metric,
    ) -> None:
        check_dictionaries(adapter, dictionaries)
        self.model, self.adapter, self.metric = model, adapter, metric
        self.places = adapter.sort(dictionaries)
        self.dictionaries = {place: dictionaries[place] for place in self.places}
        self.trace_kwargs = adapter.forward_kwargs(
            last_position_only=getattr(metric, "last_position_only", False)
        )

    @property
    def device(self) -> torch.device:
        return self.adapter.device

    def run(
        self,
        ids: torch.Tensor,
        batch: PromptBatch,
        *,
        places: list[str] | None = None,
        grad: bool = False,
        hold_fixed: bool = False,
        edit_features: Edit | None = None,
        edit_error: Edit | None = None,
        upstream: list[torch.Tensor] | None = None,
    ) -> SplicedRun:
        """Trace ``ids (B, T)`` with ``places`` (default: all) spliced. ``upstream`` holds
        cached ``resid.0 .. resid.(L-1)`` outputs to skip the first ``L`` blocks."""
        model, adapter, metric = self.model, self.adapter, self.metric
        dictionaries = {p: self.dictionaries[p] for p in (places or self.places)}
        with torch.set_grad_enabled(grad), model.trace(ids.to(self.device), **self.trace_kwargs):
            if upstream:
                adapter.skip_blocks(upstream)
            spliced = splice(
                adapter,
                dictionaries,
                hold_fixed=hold_fixed,
                edit_features=edit_features,
                edit_error=edit_error,
            )
            value = nnsight.save(metric(model, adapter, batch.to(self.device)))
        return SplicedRun(spliced, value)

    def upstream_cache(self, ids: torch.Tensor, layers: int) -> list[torch.Tensor]:
        """Outputs of blocks ``0 .. layers - 1`` on ``ids`` (for ``run(upstream=...)``)."""
        if layers == 0:
            return []
        names = [f"resid.{layer}" for layer in range(layers)]
        acts = collect_activations(self.model, self.adapter, ids.to(self.device), names)
        return [acts[name] for name in names]

    def clean_and_patch(
        self, batch: PromptBatch, *, grad: bool = False, hold_fixed: bool = False
    ) -> tuple[SplicedRun, SplicedRun | None, dict[str, PlaceValues]]:
        """The clean run (with its autograd graph if ``grad``; spliced with ``hold_fixed``
        if asked), the patch run (``None`` without patch prompts: then the patch values are
        zero, the zero baseline) and every place's aligned clean and patch values."""
        clean = self.run(batch.clean_ids, batch, grad=grad, hold_fixed=hold_fixed)
        patch = None if batch.patch_ids is None else self.run(batch.patch_ids, batch)
        values = {}
        for place, sp in clean.places.items():
            f, e = sp.features.detach(), sp.error.detach()
            if patch is None:
                f_patch, e_patch = torch.zeros_like(f), torch.zeros_like(e)
            else:
                f_patch = align_patch(patch.places[place].features.detach(), f)
                e_patch = align_patch(patch.places[place].error.detach(), e)
            values[place] = PlaceValues(f, f_patch, e, e_patch)
        return clean, patch, values
