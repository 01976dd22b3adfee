"""Splice sparse dictionaries into a model's forward pass (Marks et al., 2024, section 2).

At each spliced place the activation ``x`` is replaced by ``x_hat + err``:

1. read ``x`` (for a transcoder, read its input place and the output ``y`` it reconstructs);
2. ``features = encode(x)`` and ``error = x - decode(features)``, each made a leaf tensor that
   requires grad, so ``d metric / d features`` and ``d metric / d error`` are read directly;
3. write ``decode(features) + error`` back. The value equals ``x`` up to rounding.

The dictionary computes in its own dtype (the input is cast to it); ``cast_dictionaries`` gives
copies in the model's dtype, as ``Runner`` uses them. The error and the value written back are
float32, cast to the activation's dtype as they are written (float32 under mixed precision,
``circuits.model.mixed_precision``): the spliced forward pass is then the model's own up to
float32 rounding, whatever the dictionary's dtype.

Two gradient modes:

- default (``hold_fixed=False``): the written value also carries ``x - x.detach()``, a zero
  that routes gradients straight through to ``x``, so upstream places receive the model's true
  total gradient while ``features`` and ``error`` receive theirs;
- ``hold_fixed=True``: the written value is built only from the two leaves, so nothing flows
  through a spliced place: a gradient between two places follows direct paths only, with every
  other spliced place held fixed (stop-gradient), as edge attribution needs. The features and
  error as functions of upstream activations are kept as ``upstream_features``/``upstream_error``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import nnsight
import torch

from sparse_circuits.circuits.model.adapters import ModelAdapter
from sparse_circuits.dictionaries import Dictionary, DictionaryError

__all__ = ["SplicedPlace", "splice", "check_dictionaries", "cast_dictionaries"]

Edit = Callable[[str, torch.Tensor], torch.Tensor]
"""``(place, tensor) -> tensor`` of the same shape: changes features ``(B, T, d_sae)`` before
they are decoded, or the error ``(B, T, d_out)`` before it is added back."""


@dataclass
class SplicedPlace:
    """One spliced place after the forward pass. Shapes: ``(batch, pos, width)``."""

    place: str
    dictionary: Dictionary
    input: torch.Tensor
    """What the dictionary read, ``(B, T, d_in)``."""
    features: torch.Tensor
    """Leaf ``(B, T, d_sae)``; its gradient is ``d metric / d features``."""
    error: torch.Tensor
    """Leaf ``(B, T, d_out)``, float32: what the dictionary does not reconstruct."""
    output: torch.Tensor
    """What replaced the activation, ``(B, T, d_out)``."""
    upstream_features: torch.Tensor | None = None
    """With ``hold_fixed``: ``encode(input)``, still attached to the upstream graph."""
    upstream_error: torch.Tensor | None = None
    """With ``hold_fixed``: the error, still attached to the upstream graph."""


def check_dictionaries(adapter: ModelAdapter, dictionaries: Mapping[str, Dictionary]) -> None:
    """Every key a valid place and every dictionary's widths matching its places."""
    for place, dictionary in dictionaries.items():
        adapter.parse(place)
        source = dictionary.config.reads_at(place)
        adapter.parse(source)
        if adapter.parse(source).order > adapter.parse(place).order:
            raise DictionaryError(f"transcoder for {place} reads {source}, which comes after it")
        for what, width, at in (
            ("d_in", dictionary.d_in, source),
            ("d_out", dictionary.d_out, place),
        ):
            if width != adapter.width(at):
                raise DictionaryError(
                    f"dictionary for {place} has {what} {width}, but {at} of this "
                    f"{adapter.model_type} model has width {adapter.width(at)}"
                )


def cast_dictionaries(
    dictionaries: Mapping[str, Dictionary], dtype: torch.dtype
) -> dict[str, Dictionary]:
    """The dictionaries computing in ``dtype``: those already in it as they are, the others as
    copies cast to it (the caller's dictionaries are left alone)."""
    return {
        place: d if d.dtype == dtype else copy.deepcopy(d).to(dtype)
        for place, d in dictionaries.items()
    }


def _splice_one(
    place: str,
    dictionary: Dictionary,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    hold_fixed: bool,
    edit_features: Edit | None,
    edit_error: Edit | None,
) -> SplicedPlace:
    """``x`` the dictionary's input, ``target`` the activation it replaces (both (B, T, d)).

    The dictionary computes in its dtype; the error and the sum written back are float32, so
    that the written value is ``target`` again up to float32 rounding whatever that dtype is
    (in bfloat16 the error, a difference of two close values, would lose most of its
    digits)."""
    x_in = x.to(dictionary.dtype)
    upstream_features = dictionary.encode(x_in)
    skip = dictionary.skip_term(x_in)
    skip = None if skip is None else skip.float()
    # what the sparse part and the error must add up to
    rest = target.float() if skip is None else target.float() - skip
    features = upstream_features.detach().requires_grad_(True)
    x_hat = dictionary.decode(features).float()
    error = (rest - x_hat).detach().requires_grad_(True)
    upstream_error = rest - dictionary.decode(upstream_features).float() if hold_fixed else None
    if edit_features is not None:
        x_hat = dictionary.decode(edit_features(place, features)).float()
    output = x_hat + (error if edit_error is None else edit_error(place, error))
    if skip is not None:
        output = output + (skip if hold_fixed else skip.detach())
    output = output.to(target.dtype)
    if not hold_fixed:
        output = output + (target - target.detach())
    return SplicedPlace(
        place=place,
        dictionary=dictionary,
        input=x,
        features=features,
        error=error,
        output=output,
        upstream_features=upstream_features if hold_fixed else None,
        upstream_error=upstream_error,
    )


def splice(
    adapter: ModelAdapter,
    dictionaries: Mapping[str, Dictionary],
    *,
    hold_fixed: bool = False,
    edit_features: Edit | None = None,
    edit_error: Edit | None = None,
) -> dict[str, SplicedPlace]:
    """Splice ``dictionaries`` (place -> dictionary) into the running trace.

    Call inside ``with model.trace(...)`` before touching any module after the first spliced
    place (nnsight visits modules in forward order). Returns place -> ``SplicedPlace``, saved
    so it is readable after the trace. ``edit_features`` and ``edit_error`` may change what is
    written back (ablation, clamping, dropping the error to test the reconstruction alone).
    """
    sources = {place: d.config.reads_at(place) for place, d in dictionaries.items()}
    inputs: dict[str, torch.Tensor] = {}
    spliced: dict[str, SplicedPlace] = {}
    for name in adapter.sort(set(sources) | set(sources.values())):
        if name in sources.values() and name not in dictionaries:
            inputs[name] = adapter.read(name)
        if name in dictionaries:
            target = adapter.read(name)
            x = inputs.get(sources[name], target)
            spliced[name] = _splice_one(
                name,
                dictionaries[name],
                x,
                target,
                hold_fixed=hold_fixed,
                edit_features=edit_features,
                edit_error=edit_error,
            )
            adapter.write(name, spliced[name].output)
            inputs[name] = target
    return nnsight.save(spliced)
