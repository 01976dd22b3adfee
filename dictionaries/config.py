"""What a dictionary is apart from its weights: its config, its error type, the architecture
registry (``config.arch`` -> class) and reading a JSON config file.

Knows no dictionary class: the classes register themselves (``register_architecture``) when
``dictionaries`` is imported, so the file formats can build any of them from a config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparse_circuits.dictionaries.base import Dictionary

__all__ = [
    "ARCHITECTURES",
    "DictionaryConfig",
    "DictionaryError",
    "architecture_class",
    "config_from_file",
    "register_architecture",
]


class DictionaryError(ValueError):
    """A dictionary that cannot be built, read or used as asked; the message names the file."""


@dataclass
class DictionaryConfig:
    """Everything about a dictionary except its weights; stored as ``config.json``."""

    arch: str
    """Architecture name: one of ``ARCHITECTURES`` (relu, gated, topk, batchtopk, jumprelu)."""
    d_in: int
    """Width of the activation the dictionary reads."""
    d_sae: int
    """Number of features."""
    d_out: int | None = None
    """Width of what it reconstructs; ``None`` means ``d_in`` (every SAE)."""
    k: int | None = None
    """Active features per token (topk) or per token on average over a batch (batchtopk)."""
    signed: bool = False
    """topk only: keep the ``k`` largest pre-activations with their sign (circuit-tracer's TopK)
    instead of their ReLU, so a kept pre-activation may be negative."""
    center_input: bool = True
    """Subtract ``b_dec`` from the input before encoding (SAEs; never for transcoders)."""
    skip: bool = False
    """Has a linear skip connection ``x @ W_skip`` (skip transcoder)."""
    place: str | None = None
    """Where it reads in the model (``resid.3``, ``mlp_in.7``...)."""
    writes: str | None = None
    """Where a transcoder writes (``mlp.7``); ``None`` means it reconstructs ``place``."""
    writes_later: list[str] = field(default_factory=list)
    """Later places a transcoder's features write as well, each through its own decoder
    ``W_dec_later[i]`` and without a bias: one layer of a cross-layer transcoder
    (``dictionaries.cross_layer``) reads ``mlp_in.N``, writes ``mlp.N`` and ``mlp.N+1 ...``."""
    model: str | None = None
    """Model it was trained on."""
    source_format: str = "native"
    """Format it was read from (native, dictionary_learning, saelens, gemma_scope...)."""
    training: dict[str, Any] = field(default_factory=dict)
    """Training settings, as the trainer recorded them."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Evaluation metrics (fvu, l0, dead_fraction...)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise DictionaryError(
                f"unknown dictionary architecture {self.arch!r}; known: {sorted(ARCHITECTURES)}"
            )
        if self.d_out is None:
            self.d_out = self.d_in
        for name in ("d_in", "d_sae", "d_out"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise DictionaryError(f"{name} must be a positive integer, got {value!r}")
        if self.arch in ("topk", "batchtopk"):
            if self.k is None or not 0 < self.k <= self.d_sae:
                raise DictionaryError(
                    f"{self.arch} needs 0 < k <= d_sae ({self.d_sae}), got k={self.k}"
                )
        if self.signed and self.arch != "topk":
            raise DictionaryError(f"signed applies to topk only, not {self.arch}")
        if self.center_input and self.d_out != self.d_in:
            raise DictionaryError(
                "center_input needs d_out == d_in (b_dec lives in the input space)"
            )
        self.writes_later = list(self.writes_later)
        if self.writes_later and not self.is_transcoder:
            raise DictionaryError("writes_later needs a transcoder (writes != place)")
        if len(set(self.writes_later) | {self.writes}) != len(self.writes_later) + 1:
            raise DictionaryError(
                f"writes_later {self.writes_later} repeats a place (writes is {self.writes})"
            )

    @property
    def is_transcoder(self) -> bool:
        return self.writes is not None and self.writes != self.place

    def reads_at(self, place: str) -> str:
        """The place a dictionary spliced at ``place`` reads: a transcoder's own input place
        (``config.place``), else ``place`` itself."""
        return self.place if self.is_transcoder and self.place else place

    def replaces(self, place: str | None = None) -> str:
        """The place whose activation the dictionary replaces when spliced in.

        An SAE replaces the place it reads (``place``, or else ``config.place``); a transcoder
        the place it writes (``config.writes``), whether ``place`` names that or the place it
        reads."""
        if self.is_transcoder:
            if not self.place:
                raise DictionaryError(
                    f"transcoder writing {self.writes} does not say where it reads (config.place)"
                )
            if place not in (None, self.place, self.writes):
                raise DictionaryError(
                    f"transcoder reads {self.place} and writes {self.writes}; "
                    f"it cannot be evaluated at {place}"
                )
            return self.writes
        place = place or self.place
        if place is None:
            raise DictionaryError(
                "the dictionary does not say where it reads (config.place); pass place="
            )
        return place

    @property
    def is_cross_layer(self) -> bool:
        """Whether its features write more than one place (``writes_later``)."""
        return bool(self.writes_later)

    def written_places(self, place: str | None = None) -> list[str]:
        """Every place the features write, in the order of their decoders: the place it
        replaces (``replaces(place)``), then ``writes_later``."""
        return [self.replaces(place), *self.writes_later]

    def require_one_place(self, what: str) -> None:
        """Refuse a dictionary whose features write several places where ``what`` handles
        one place at a time."""
        if self.is_cross_layer:
            raise DictionaryError(
                f"the dictionary reading {self.place} is one layer of a cross-layer transcoder "
                f"(it writes {self.writes} and {', '.join(self.writes_later)}); {what} takes "
                "dictionaries that write one place"
            )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "config") -> DictionaryConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DictionaryError(f"{source}: unknown config fields {unknown}")
        try:
            return cls(**data)
        except TypeError as error:
            raise DictionaryError(f"{source}: {error}") from error


ARCHITECTURES: dict[str, type[Dictionary]] = {}


def register_architecture(name: str):
    """Class decorator: make an architecture loadable by the name in ``config.arch``."""

    def decorate(cls: type[Dictionary]) -> type[Dictionary]:
        cls.arch = name
        ARCHITECTURES[name] = cls
        return cls

    return decorate


def architecture_class(name: str) -> type[Dictionary]:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise DictionaryError(
            f"unknown dictionary architecture {name!r}; known: {sorted(ARCHITECTURES)}"
        ) from None


def config_from_file(path: Path) -> dict[str, Any]:
    """Read a JSON config file; a missing or malformed file raises one error naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DictionaryError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DictionaryError(f"{path}: not valid JSON ({error})") from None
