"""Splice sparse dictionaries into a model's forward pass (Marks et al., 2024, section 2).

At each spliced place the activation ``x`` is replaced by ``x_hat + err``:

1. read ``x`` (for a transcoder, read its input place and the output ``y`` it reconstructs);
2. ``features = encode(x)`` and ``error = x - decode(features)``, each made a leaf tensor that
   requires grad, so ``d metric / d features`` and ``d metric / d error`` are read directly;
3. write ``decode(features) + error`` back: the value is ``x`` again (written as ``x`` plus what
   edits change, below).

A place may be written by several dictionaries: the layers of a cross-layer transcoder
(``dictionaries.cross_layer``; a dictionary with ``config.writes_later``) are keyed by the
first place they write, ``mlp.N``, and also write every later ``mlp.M``. Then ``x_hat`` at
``mlp.M`` is the sum of what every layer N <= M writes into it (``decode_at``; only layer M's
share carries a bias), and the one error of ``mlp.M`` is ``y - x_hat``. A run that splices
some layers only (the ``ig`` and ``exact`` passes splice one place at a time) still writes
their later places, each with an error of its own that is no node: the value written is the
model's own plus the change of the features' writes (``x_hat`` of the edited features minus
``x_hat`` of the encoded ones), which is what patching a cross-layer feature means here.

The dictionary computes in its own dtype (the input is cast to it); ``cast_dictionaries`` gives
copies in the model's dtype, as ``Runner`` uses them. The error is float32; the value written
back is the activation plus, in float32, the change the edits make, cast to the activation's
dtype (float32 under mixed precision, ``circuits.model.mixed_precision``): unedited, the
spliced forward pass is the model's own exactly, whatever the dictionary's dtype.

Two gradient modes:

- default (``hold_fixed=False``): the written value is built on ``x`` itself, which routes
  gradients straight through to ``x``, so upstream places receive the model's true total
  gradient while ``features`` and ``error`` receive theirs (they enter as zeros
  ``t - t.detach()``);
- ``hold_fixed=True``: the written value is built only from the leaves, so nothing flows
  through a spliced place: a gradient between two places follows direct paths only, with every
  other spliced place held fixed (stop-gradient), as edge attribution needs. The features and
  error as functions of upstream activations are kept as ``upstream_features``/``upstream_error``
  (at ``mlp.M`` of a cross-layer transcoder: ``y`` minus the reconstruction from every
  writing layer's ``upstream_features``, a function of the MLP inputs at M and before).
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
    """Leaf ``(B, T, d_out)``, float32: what the dictionaries writing the place (this one; at
    ``mlp.M`` of a cross-layer transcoder every layer N <= M) do not reconstruct."""
    output: torch.Tensor
    """What replaced the activation, ``(B, T, d_out)``."""
    upstream_features: torch.Tensor | None = None
    """With ``hold_fixed``: ``encode(input)``, still attached to the upstream graph."""
    upstream_error: torch.Tensor | None = None
    """With ``hold_fixed``: the error, still attached to the upstream graph."""


def check_dictionaries(adapter: ModelAdapter, dictionaries: Mapping[str, Dictionary]) -> None:
    """Every key a valid place, every dictionary's widths matching its places, and every
    later place a cross-layer dictionary writes spliced too (its error is a node)."""
    for place, dictionary in dictionaries.items():
        source = dictionary.config.reads_at(place)
        order = adapter.parse(place).order
        if adapter.parse(source).order > order:
            raise DictionaryError(f"transcoder for {place} reads {source}, which comes after it")
        for later in dictionary.config.writes_later:
            if later not in dictionaries:
                raise DictionaryError(
                    f"the dictionary for {place} (a layer of a cross-layer transcoder) also "
                    f"writes {later}, which has no dictionary: splice every later layer too"
                )
            if adapter.parse(later).order <= order:
                raise DictionaryError(f"the dictionary for {place} writes {later}, before it")
        for what, width, at in (
            ("d_in", dictionary.d_in, source),
            *(("d_out", dictionary.d_out, at) for at in (place, *dictionary.config.writes_later)),
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


@dataclass
class _Encoded:
    """One dictionary's features in a spliced pass, ``(B, T, d_sae)``."""

    input: torch.Tensor
    """What it read, ``(B, T, d_in)``."""
    upstream: torch.Tensor
    """``encode(input)``, attached to the upstream graph."""
    leaf: torch.Tensor
    """The same values as a leaf that requires grad."""
    written: torch.Tensor
    """What is decoded into the written places: ``leaf``, or ``edit_features`` of it."""


def _encode(place: str, dictionary: Dictionary, x: torch.Tensor, edit: Edit | None) -> _Encoded:
    upstream = dictionary.encode(x.to(dictionary.dtype))
    leaf = upstream.detach().requires_grad_(True)
    return _Encoded(x, upstream, leaf, leaf if edit is None else edit(place, leaf))


def _reconstruction(writers, which: str) -> torch.Tensor:
    """``(B, T, d_out)`` float32: the sum of what each ``(dictionary, index, encoded)`` writes
    into this place, from its features ``which`` (``leaf``, ``upstream`` or ``written``)."""
    parts = [d.decode_at(getattr(enc, which), index).float() for d, index, enc in writers]
    return sum(parts[1:], parts[0])


def _write(
    place: str,
    target: torch.Tensor,
    writers: list[tuple[Dictionary, int, _Encoded]],
    *,
    hold_fixed: bool,
    edit_error: Edit | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(output, error, upstream_error)`` at a place whose activation ``target (B, T, d)`` is
    replaced by what ``writers`` write into it plus the error.

    The dictionaries compute in their dtype; the error is float32, and the value written back
    is ``target`` plus, in float32, what the edits change (``x_hat`` of the edited features
    minus ``x_hat`` of the encoded ones, the edited error minus the error): unedited, the
    activation itself, whatever the dictionaries' dtype and however much of ``x_hat`` the
    error cancels (in bfloat16 the error, a difference of two close values, would lose most
    of its digits). The leaves enter as ``t - t.detach()`` zeros, so they get their
    gradients; ``target`` passes its gradient on unless ``hold_fixed``, where only the skip
    connection, a direct path from the input, does."""
    skips = [d.skip_term(enc.input.to(d.dtype)) for d, index, enc in writers if index == 0]
    skip = None if not skips or skips[0] is None else skips[0].float()
    # what the features' writes and the error must add up to
    rest = target.float() if skip is None else target.float() - skip
    x_hat = _reconstruction(writers, "leaf")
    error = (rest - x_hat).detach().requires_grad_(True)
    upstream_error = rest - _reconstruction(writers, "upstream") if hold_fixed else None
    edited = any(enc.written is not enc.leaf for _, _, enc in writers)
    written = _reconstruction(writers, "written") if edited else x_hat
    new_error = error if edit_error is None else edit_error(place, error)
    if not hold_fixed:
        base = target.float()
    elif skip is None:
        base = target.float().detach()
    else:
        base = rest.detach() + skip
    output = base + (written - x_hat.detach()) + (new_error - error.detach())
    return output.to(target.dtype), error, upstream_error


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
    written back (ablation, clamping, dropping the error to test the reconstruction alone);
    they are called for the places of ``dictionaries`` only.
    """
    sources = {place: d.config.reads_at(place) for place, d in dictionaries.items()}
    # written place -> (key, index into the places it writes) of every dictionary writing it
    writers: dict[str, list[tuple[str, int]]] = {}
    for place, d in dictionaries.items():
        for index, written in enumerate([place, *d.config.writes_later]):
            writers.setdefault(written, []).append((place, index))
    inputs: dict[str, torch.Tensor] = {}
    encoded: dict[str, _Encoded] = {}
    spliced: dict[str, SplicedPlace] = {}
    for name in adapter.sort(set(sources.values()) | set(writers)):
        if name not in writers:
            inputs[name] = adapter.read(name)
            continue
        target = adapter.read(name)
        own = name in dictionaries
        if own:
            x = inputs.get(sources[name], target)
            encoded[name] = _encode(name, dictionaries[name], x, edit_features)
        output, error, upstream_error = _write(
            name,
            target,
            [(dictionaries[key], index, encoded[key]) for key, index in writers[name]],
            hold_fixed=hold_fixed,
            edit_error=edit_error if own else None,
        )
        adapter.write(name, output)
        inputs[name] = target
        if own:
            enc = encoded[name]
            spliced[name] = SplicedPlace(
                place=name,
                dictionary=dictionaries[name],
                input=enc.input,
                features=enc.leaf,
                error=error,
                output=output,
                upstream_features=enc.upstream if hold_fixed else None,
                upstream_error=upstream_error,
            )
    return nnsight.save(spliced)
