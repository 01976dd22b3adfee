"""Stream a model's activations at one place (or an input/output pair, for transcoders).

1. The corpus is tokenised into fixed-length contexts (``circuits.corpus.tokenize_contexts``);
   each data-parallel rank reads its own shard of them.
2. Batches of contexts run through the model only as far as the deepest place needed (the
   trace stops there). The first ``exclude_first`` positions (BOS / attention sinks) and tokens
   whose norm is far above the median (outliers) are dropped.
3. Activations wait in a buffer that is reshuffled at every refill, which happens when it is
   half drained, so each training batch mixes many contexts.
The whole state (context order and position, buffer, generator) is resumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nnsight
import torch

from sparse_circuits.circuits.model.adapters import ModelAdapter, model_device
from sparse_circuits.errors import ConfigError

__all__ = [
    "ActivationConfig",
    "ModelActivationSource",
    "PlaceView",
    "SharedStream",
    "collect_activations",
    "uses_bos",
]


@dataclass
class ActivationConfig:
    place: str
    """Where the dictionary reads (``resid.3``, ``mlp_in.7``...)."""
    target_place: str | None = None
    """Where a transcoder writes; ``None`` for an SAE (target = input)."""
    model_batch: int = 16
    """Contexts per forward pass."""
    buffer_tokens: int = 65_536
    """Activations kept in the shuffled buffer."""
    exclude_first: int = 1
    """Leading positions of each context left out (BOS and attention-sink tokens)."""
    outlier_factor: float | None = 10.0
    """Tokens whose activation norm exceeds this many times the batch median are left out."""
    seed: int = 0
    """Seeds the order of the contexts and the buffer's shuffle."""

    def __post_init__(self) -> None:
        for name in ("model_batch", "buffer_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.exclude_first < 0:
            raise ConfigError(f"exclude_first must be >= 0, got {self.exclude_first}")


def uses_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer itself starts plain text with BOS (contexts should match)."""
    ids = tokenizer("a").input_ids
    return tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]


def collect_activations(
    model: Any, adapter: ModelAdapter, ids_BT: torch.Tensor, places: list[str]
) -> dict[str, torch.Tensor]:
    """``place -> (B, T, d)`` activations, running the model no further than the last place."""
    ordered = adapter.sort(places)
    with torch.no_grad(), model.trace(ids_BT) as tracer:
        acts = nnsight.save({place: adapter.read(place) for place in ordered})
        tracer.stop()
    return acts


class ModelActivationSource:
    """An ``ActivationSource`` (see ``dictionaries.training.sources``) backed by a model."""

    def __init__(
        self,
        model: Any,
        adapter: ModelAdapter,
        contexts_NT: torch.Tensor,
        config: ActivationConfig,
        *,
        rank: int = 0,
        world: int = 1,
        places: list[str] | None = None,
    ) -> None:
        self.model, self.adapter, self.config = model, adapter, config
        own = [config.place] + ([config.target_place] if config.target_place else [])
        self.places = list(dict.fromkeys(own + list(places or [])))
        """Places held in the buffer, side by side (``columns``); more than the source's own
        when several dictionaries share the stream (``SharedStream``)."""
        for place in self.places:
            adapter.parse(place)
        if contexts_NT.shape[1] <= config.exclude_first:
            raise ValueError(
                f"contexts of {contexts_NT.shape[1]} tokens leave nothing after excluding "
                f"the first {config.exclude_first}"
            )
        self.contexts = contexts_NT[rank::world]
        if len(self.contexts) == 0:
            raise ValueError(f"rank {rank} of {world} has no contexts: the corpus is too small")
        self.world = world
        self.d_in = adapter.width(config.place)
        self.d_out = adapter.width(config.target_place or config.place)
        self.generator = torch.Generator().manual_seed(config.seed + rank)
        self.order = torch.randperm(len(self.contexts), generator=self.generator)
        self.position = 0
        self.epoch = 0
        offsets = [0]
        for place in self.places:
            offsets.append(offsets[-1] + adapter.width(place))
        self._columns = {p: slice(offsets[i], offsets[i + 1]) for i, p in enumerate(self.places)}
        self.buffer = torch.empty(0, offsets[-1])

    def columns(self, place: str) -> slice:
        """Where a place's activation sits in a buffer row."""
        return self._columns[place]

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def _next_contexts(self) -> torch.Tensor:
        if self.position >= len(self.order):
            self.order = torch.randperm(len(self.contexts), generator=self.generator)
            self.position, self.epoch = 0, self.epoch + 1
        rows = self.order[self.position : self.position + self.config.model_batch]
        self.position += len(rows)
        return self.contexts[rows]

    def _compute(self) -> torch.Tensor:
        """Rows of the next model batch, ``(tokens, d_in [+ d_out])``, filtered."""
        ids = self._next_contexts().to(self.device)
        acts = collect_activations(self.model, self.adapter, ids, self.places)
        start = self.config.exclude_first
        rows = torch.cat([acts[p][:, start:].flatten(0, 1).float().cpu() for p in self.places], -1)
        keep = torch.isfinite(rows).all(-1)
        if self.config.outlier_factor is not None:
            for place in self.places:
                norms = rows[:, self.columns(place)].norm(dim=-1)
                keep &= norms <= self.config.outlier_factor * norms.median()
        return rows[keep]

    def _refill(self, at_least: int = 0) -> None:
        """Compute model batches until the buffer holds ``buffer_tokens`` rows, or
        ``at_least`` if that is more, then shuffle it."""
        parts = [self.buffer]
        total = len(self.buffer)
        while total < max(self.config.buffer_tokens, at_least):
            parts.append(self._compute())
            total += len(parts[-1])
        self.buffer = torch.cat(parts)[torch.randperm(total, generator=self.generator)]

    def buffer_after_refill(self) -> torch.Tensor:
        """Refill now and return the buffer (for inspection)."""
        self._refill()
        return self.buffer

    def take_rows(self, batch_size: int) -> torch.Tensor:
        """This rank's next ``batch_size // world`` buffer rows (every place's columns)."""
        n = batch_size // self.world
        if len(self.buffer) < max(n, self.config.buffer_tokens // 2):
            self._refill(at_least=n)
        rows, self.buffer = self.buffer[:n], self.buffer[n:]
        return rows

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.take_rows(batch_size)
        x = rows[:, self.columns(self.config.place)]
        target = self.config.target_place
        return x, (x if target is None else rows[:, self.columns(target)])

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order.clone(),
            "position": self.position,
            "epoch": self.epoch,
            "buffer": self.buffer.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position, self.epoch = state["position"], state["epoch"]
        self.buffer = state["buffer"].clone()


class SharedStream:
    """One activation stream feeding several dictionaries trained in lockstep: each model
    batch is computed once for every place, and every view sees the same rows.

    Create every view before the first batch is drawn; views must then take equal batch
    sizes in turn (``train_dictionaries`` does). The run is not resumable (checkpoints of the
    views hold no stream state).
    """

    def __init__(self, source: ModelActivationSource) -> None:
        self.source = source
        self.queues: dict[int, list[torch.Tensor]] = {}
        self.drawn = False

    def view(self, place: str, target_place: str | None = None) -> PlaceView:
        if any(self.queues.values()) or self.drawn:
            raise RuntimeError("create every view before the first batch is drawn")
        view = PlaceView(self, place, target_place)
        self.queues[id(view)] = []
        return view

    def rows_for(self, view: PlaceView, batch_size: int) -> torch.Tensor:
        queue = self.queues[id(view)]
        if not queue:
            self.drawn = True
            rows = self.source.take_rows(batch_size)
            for other in self.queues.values():
                other.append(rows)
        return queue.pop(0)


class PlaceView:
    """An ``ActivationSource`` reading one place (and a transcoder's target) of a stream."""

    def __init__(self, stream: SharedStream, place: str, target_place: str | None) -> None:
        self.stream, self.place, self.target_place = stream, place, target_place
        adapter = stream.source.adapter
        self.d_in = adapter.width(place)
        self.d_out = adapter.width(target_place or place)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.stream.rows_for(self, batch_size)
        x = rows[:, self.stream.source.columns(self.place)]
        if self.target_place is None:
            return x, x
        return x, rows[:, self.stream.source.columns(self.target_place)]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise ValueError("a run on a shared stream cannot resume; train places one at a time")
