"""Interventions that stay in force over forward passes and generation.

An intervention changes the activation at one place, ``(B, T, d) -> (B, T, d)``:

- ``FeatureAblation``: set some dictionary features to zero, to their mean or to values
  resampled from other inputs: ``x + (f_new - f) @ W_dec`` (the error is kept, so features not
  ablated and everything the dictionary misses stay as they were); ``f_new`` comes from the
  ablation modes shared with circuit faithfulness (``circuits.model.ablation``);
- ``FeatureClamp``: set features to fixed values;
- ``Steering``: add ``coef * vector`` at chosen absolute positions (all by default).

``intervene(adapter, interventions)`` applies them as plain PyTorch forward hooks on the
adapter's modules while the ``with`` block lasts; ``EditedModel`` keeps them until
``remove()``. Hooks act on every call of the module, so they hold across the forward passes of
``generate`` (absolute positions come from the ``position_ids`` the model is called with) and
of nnsight traces. nnsight hands a module's output to the trace before PyTorch's hooks run, so
inside a trace a hook's edit reaches everything downstream but not what the trace reads at that
very place; to splice or record the edited activation itself, apply the interventions inside
the trace instead, before splicing: ``apply_in_trace(adapter, interventions)``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sparse_circuits.circuits.model.ablation import Ablation, ablation_values, check_ablation
from sparse_circuits.circuits.model.adapters import ModelAdapter, torch_module
from sparse_circuits.dictionaries import Dictionary, DictionaryError

__all__ = [
    "Intervention",
    "FeatureAblation",
    "FeatureClamp",
    "Steering",
    "apply_in_trace",
    "intervene",
    "EditedModel",
]


def _check_features(dictionary: Dictionary, features: Sequence[int], place: str) -> list[int]:
    dictionary.config.require_one_place("a feature intervention at one place")
    features = [int(f) for f in features]
    if not features:
        raise ValueError(f"no features given to intervene on at {place}")
    bad = [f for f in features if not 0 <= f < dictionary.d_sae]
    if bad:
        raise DictionaryError(
            f"feature ids {bad} are out of range for the dictionary at {place} "
            f"(d_sae = {dictionary.d_sae})"
        )
    return features


class Intervention(ABC):
    place: str

    @abstractmethod
    def apply(self, x_BTD: torch.Tensor, positions_BT: torch.Tensor) -> torch.Tensor:
        """The intervened activation; ``positions_BT`` are absolute token positions."""


@dataclass
class FeatureAblation(Intervention):
    """Ablate ``features`` at ``place`` (``circuits.model.ablation`` defines the modes). The
    edited inputs have no fixed length and are not in a reference set, so ``mean`` takes one
    given mean per feature for every position and ``resample`` draws each token's values
    from a given pool of other inputs' activations, uniformly with replacement."""

    place: str
    dictionary: Dictionary
    features: Sequence[int]
    mode: Ablation = "zero"
    values: torch.Tensor | None = None
    """``mean``: the features' mean activations ``(n,)``; ``resample``: a pool ``(M, n)`` of
    activations to draw from (one row per token, drawn with ``seed``)."""
    seed: int = 0
    _generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.features = _check_features(self.dictionary, self.features, self.place)
        check_ablation(self.mode, name="ablation mode")
        if self.mode != "zero" and self.values is None:
            raise ValueError(f"{self.mode} ablation needs the values to ablate to")
        self._generator = torch.Generator().manual_seed(self.seed)

    def replacement(self, f_BTn: torch.Tensor) -> torch.Tensor:
        """``(B, T, n)``: what the ablated features are set to."""
        rows_BT = None
        if self.mode == "resample":
            rows_BT = torch.randint(len(self.values), f_BTn.shape[:-1], generator=self._generator)
        return ablation_values(self.mode, f_BTn, reference=self.values, rows=rows_BT)

    def apply(self, x_BTD: torch.Tensor, positions_BT: torch.Tensor) -> torch.Tensor:
        d = self.dictionary
        index = torch.tensor(self.features, device=x_BTD.device)
        f_BTn = d.encode(x_BTD.to(d.dtype))[..., index]
        change = (self.replacement(f_BTn) - f_BTn) @ d.W_dec[index]
        return x_BTD + change.to(x_BTD.dtype)


@dataclass
class FeatureClamp(Intervention):
    place: str
    dictionary: Dictionary
    values: Mapping[int, float]
    """feature id -> the value it is clamped to."""

    def __post_init__(self) -> None:
        self.features = _check_features(self.dictionary, list(self.values), self.place)

    def apply(self, x_BTD: torch.Tensor, positions_BT: torch.Tensor) -> torch.Tensor:
        d = self.dictionary
        index = torch.tensor(self.features, device=x_BTD.device)
        target = torch.tensor([float(self.values[f]) for f in self.features]).to(x_BTD)
        f_BTn = d.encode(x_BTD.to(d.dtype))[..., index].to(x_BTD)
        return x_BTD + ((target - f_BTn) @ d.W_dec[index].to(x_BTD))


@dataclass
class Steering(Intervention):
    place: str
    vector: torch.Tensor
    """``(d,)`` direction added to the activation."""
    coef: float = 1.0
    positions: Sequence[int] | None = None
    """Absolute token positions to steer; ``None``: every position, generated ones too."""

    def apply(self, x_BTD: torch.Tensor, positions_BT: torch.Tensor) -> torch.Tensor:
        added = self.coef * self.vector.to(x_BTD)
        if self.positions is None:
            return x_BTD + added
        wanted = torch.tensor(list(self.positions), device=positions_BT.device)
        mask_BT = torch.isin(positions_BT, wanted)
        return x_BTD + mask_BT[..., None].to(x_BTD) * added


class _Session:
    """Hooks for a set of interventions on one model, and the positions of the current call."""

    def __init__(self, adapter: ModelAdapter, interventions: Sequence[Intervention]) -> None:
        self.adapter = adapter
        self.positions: torch.Tensor | None = None
        self.handles: list[Any] = []
        by_place: dict[str, list[Intervention]] = {}
        for intervention in interventions:
            adapter.parse(intervention.place)
            if adapter.site(intervention.place).io != "output":
                raise ValueError(f"{intervention.place} is a module input; intervene on outputs")
            by_place.setdefault(intervention.place, []).append(intervention)
        root = torch_module(adapter.model)
        self.handles.append(root.register_forward_pre_hook(self._track, with_kwargs=True))
        for place, items in by_place.items():
            hook = self._make_hook(adapter.site(place).index, items)
            self.handles.append(adapter.module(place).register_forward_hook(hook))

    def _track(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        positions = kwargs.get("position_ids")
        if positions is None and ids is not None:
            positions = torch.arange(ids.shape[-1], device=ids.device).expand(ids.shape)
        self.positions = positions

    def _make_hook(self, index: int | None, items: list[Intervention]):
        def hook(module, inputs, output):
            x = output if index is None else output[index]
            positions = self.positions
            if positions is None or positions.shape != x.shape[:2]:
                positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[:2])
            for intervention in items:
                x = intervention.apply(x, positions.to(x.device))
            return x if index is None else (*output[:index], x, *output[index + 1 :])

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def apply_in_trace(adapter: ModelAdapter, interventions: Sequence[Intervention]) -> None:
    """Apply ``interventions`` inside the running trace (call it before ``splice``, which then
    reads the edited activations); places are visited in forward order."""
    by_place: dict[str, list[Intervention]] = {}
    for intervention in interventions:
        by_place.setdefault(intervention.place, []).append(intervention)
    for place in adapter.sort(by_place):
        x = adapter.read(place)
        positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[:2])
        for intervention in by_place[place]:
            x = intervention.apply(x, positions)
        adapter.write(place, x)


@contextlib.contextmanager
def intervene(adapter: ModelAdapter, interventions: Sequence[Intervention]) -> Iterator[None]:
    """Apply ``interventions`` to every forward pass inside the block."""
    session = _Session(adapter, interventions)
    try:
        yield
    finally:
        session.remove()


class EditedModel:
    """A model with interventions in force until ``remove()``: call ``generate`` or ``trace``
    (or any attribute of the wrapped nnsight model) as usual."""

    def __init__(self, model: Any, adapter: ModelAdapter, interventions: Sequence[Intervention]):
        self.model, self.adapter = model, adapter
        self.interventions = list(interventions)
        self._session = _Session(adapter, self.interventions)

    def remove(self) -> None:
        self._session.remove()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __enter__(self) -> EditedModel:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
