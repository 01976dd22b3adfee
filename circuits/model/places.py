"""Names of places in a model, and their order in the forward pass.

| name       | what it is                                                        |
|------------|-------------------------------------------------------------------|
| ``embed``    | the residual stream entering block 0 (token + position embeddings) |
| ``attn.L``   | what the attention of block L adds to the residual stream          |
| ``mlp_in.L`` | the MLP's input at block L (after its norm): what transcoders read |
| ``mlp.L``    | what the MLP of block L adds to the residual stream                |
| ``resid.L``  | the residual stream leaving block L                                |
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Place",
    "PlaceError",
    "KINDS",
    "parse_place",
    "all_places",
    "forward_order",
    "spaced_layers",
]

KINDS = ("attn", "mlp_in", "mlp", "resid")
"""Per-block kinds, in the order the forward pass produces them."""

_PATTERN = re.compile(r"^(attn|mlp_in|mlp|resid)\.(\d+)$")


class PlaceError(ValueError):
    """A place name that does not exist in the model."""


@dataclass(frozen=True, order=True)
class Place:
    layer: int
    """Block index; -1 for ``embed``."""
    kind: str
    """``embed`` or one of ``KINDS``."""

    @property
    def name(self) -> str:
        return "embed" if self.kind == "embed" else f"{self.kind}.{self.layer}"

    @property
    def order(self) -> int:
        """Position in the forward pass: ``embed`` 0, then ``attn.L`` 4L+1, ``mlp_in.L`` 4L+2,
        ``mlp.L`` 4L+3, ``resid.L`` 4L+4 (the sort key of ``forward_order``)."""
        return 0 if self.kind == "embed" else 1 + len(KINDS) * self.layer + KINDS.index(self.kind)

    def __str__(self) -> str:
        return self.name


def all_places(n_layers: int) -> list[str]:
    """Every place name of an ``n_layers`` model, in forward order."""
    return ["embed"] + [f"{kind}.{layer}" for layer in range(n_layers) for kind in KINDS]


def parse_place(name: str, n_layers: int) -> Place:
    """``"resid.3" -> Place(3, "resid")``; an unknown name lists the valid ones."""
    if name == "embed":
        return Place(-1, "embed")
    match = _PATTERN.match(name)
    if match is None or int(match.group(2)) >= n_layers:
        raise PlaceError(
            f"unknown place {name!r}; valid places are embed, "
            + ", ".join(f"{kind}.0..{n_layers - 1}" for kind in KINDS)
        )
    return Place(int(match.group(2)), match.group(1))


def forward_order(names: Iterable[str], n_layers: int) -> list[str]:
    """Sort place names into the order the forward pass produces them (duplicates removed)."""
    places = {parse_place(name, n_layers) for name in names}
    return [place.name for place in sorted(places, key=lambda p: p.order)]


def spaced_layers(n_layers: int, count: int) -> list[int]:
    """``count`` layers evenly spread over ``n_layers``, each the middle of its share:
    ``spaced_layers(30, 5) == [3, 9, 15, 21, 27]``."""
    if not 0 < count <= n_layers:
        raise ValueError(f"cannot choose {count} of {n_layers} layers")
    return [int((i + 0.5) * n_layers / count) for i in range(count)]
