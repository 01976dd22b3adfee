"""Linear probes on mean-pooled activations, and the per-group accuracies of the SHIFT
experiment (Marks et al. 2024, section 4).

- ``pooled_activations``: each text's activations at a place, averaged over its token
  positions except the first (the attention sink). Texts are sorted by token length and
  right-padded within a batch; a causal model's activations at real positions do not depend
  on the padding after them, and only real positions are averaged, so a text's result is the
  one it gets alone. Optionally each token's activations are first encoded (e.g. by a
  dictionary, to pool feature activations), and a one-token text pools its only position.
- ``train_probe``: L2-regularised logistic regression, full-batch Adam on standardised
  activations; the standardisation is folded into the returned ``LinearProbe``, which reads
  raw pooled activations.
- ``group_accuracies``: task accuracy, how well predictions track the spurious group, the
  accuracy of each (label, group) cell and the worst of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.model.activations import collect_activations
from sparse_circuits.circuits.model.adapters import ModelAdapter, model_device

__all__ = [
    "LinearProbe",
    "ProbeError",
    "group_accuracies",
    "pooled_activations",
    "pooled_activations_at",
    "train_probe",
]


class ProbeError(ValueError):
    """A probe file that cannot be read, or data a probe cannot be trained on."""


def _token_ids(tokenizer: Any, texts: Sequence[str], *, allow_single: bool) -> list[list[int]]:
    ids = [tokenizer(text).input_ids for text in texts]
    shortest = 1 if allow_single else 2
    for index, row in enumerate(ids):
        if len(row) < shortest:
            raise ValueError(
                f"text {index} ({texts[index]!r}) has {len(row)} token(s); pooling leaves out "
                f"the first position, so every text needs at least {shortest}"
            )
    return ids


def pooled_activations_at(
    model: Any,
    adapter: ModelAdapter,
    texts: Sequence[str],
    places: Sequence[str],
    *,
    batch_size: int = 16,
    encoders: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    allow_single: bool = False,
    progress: str | None = None,
) -> dict[str, torch.Tensor]:
    """``place -> (N, d_model)`` float32 mean-pooled activations of every text (one forward
    pass per batch serves every place; it stops at the deepest place).

    ``encoders``: place -> a function applied to every token's activations before pooling,
    ``(B, T, d_model) -> (B, T, k)`` (a dictionary's ``encode``, say); that place then gives
    the ``(N, k)`` mean of the encoded tokens. ``allow_single``: a one-token text pools its
    only position (it has none after the first) instead of being an error. ``progress``: the
    label of a progress bar over the batches (none without it)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    if not texts:
        raise ValueError("no texts to pool")
    encoders = dict(encoders or {})
    places = adapter.sort(list(dict.fromkeys(places)))
    ids = _token_ids(model.tokenizer, texts, allow_single=allow_single)
    pad = model.tokenizer.pad_token_id
    pad = 0 if pad is None else pad
    device = model_device(model)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: dict[str, torch.Tensor] = {}
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=progress, disable=progress is None, leave=False):
        rows = order[start : start + batch_size]
        lengths = torch.tensor([len(ids[i]) for i in rows])
        width = int(lengths.max())
        batch = torch.full((len(rows), width), pad, dtype=torch.long)
        for r, i in enumerate(rows):
            batch[r, : len(ids[i])] = torch.tensor(ids[i])
        acts = collect_activations(model, adapter, batch.to(device), places)
        # positions 1 .. length-1 of each row (0 too in a one-token row): not the padding
        positions = torch.arange(width)
        first = (lengths > 1).long()[:, None]
        mask = ((positions >= first) & (positions < lengths[:, None])).float()  # (B, T)
        for place in places:
            values = acts[place]
            if place in encoders:
                with torch.no_grad():
                    values = encoders[place](values)
            values = values.float().cpu()
            pooled = (values * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            if place not in out:
                out[place] = torch.empty(len(ids), pooled.shape[-1])
            out[place][torch.tensor(rows)] = pooled
    return out


def pooled_activations(
    model: Any,
    adapter: ModelAdapter,
    texts: Sequence[str],
    place: str,
    *,
    batch_size: int = 16,
    allow_single: bool = False,
) -> torch.Tensor:
    """``(N, d_model)`` float32: each text's activations at ``place``, averaged over its token
    positions except the first (see ``pooled_activations_at`` for ``allow_single``)."""
    return pooled_activations_at(
        model, adapter, texts, [place], batch_size=batch_size, allow_single=allow_single
    )[place]


class LinearProbe:
    """A logistic-regression probe on raw activations: ``logits(X) = X @ weight + bias``."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | float, meta: dict | None = None
    ) -> None:
        weight = torch.as_tensor(weight, dtype=torch.float32).detach()
        if weight.dim() != 1:
            raise ProbeError(f"a probe's weight must be a vector, got shape {tuple(weight.shape)}")
        self.weight = weight
        self.bias = torch.as_tensor(bias, dtype=torch.float32).detach().reshape(())
        self.meta: dict[str, Any] = dict(meta or {})
        """How the probe was made (hyper-parameters, place, ...); kept in its file."""

    @property
    def d(self) -> int:
        return len(self.weight)

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(X)
        if X.shape[-1] != self.d:
            raise ValueError(f"probe reads {self.d} features, got shape {tuple(X.shape)}")
        return X.float() @ self.weight + self.bias

    __call__ = logits

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """``(N,)`` long: 1 where the logit is positive."""
        return (self.logits(X) > 0).long()

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (``weight``, ``bias``; ``meta`` as JSON metadata)."""
        from sparse_circuits.files import write_safetensors

        metadata = {"format": "sparse-circuits-linear-probe", "meta": json.dumps(self.meta)}
        return write_safetensors(
            path, {"weight": self.weight, "bias": self.bias.reshape(1)}, metadata=metadata
        )

    @classmethod
    def load(cls, path: str | Path) -> LinearProbe:
        from safetensors import safe_open

        from sparse_circuits.files import read_safetensors

        tensors = read_safetensors(path, ProbeError)
        if set(tensors) != {"weight", "bias"}:
            raise ProbeError(f"{path}: not a probe file (holds {sorted(tensors)})")
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        try:
            meta = json.loads(metadata.get("meta", "{}"))
        except json.JSONDecodeError:
            raise ProbeError(f"{path}: the probe's metadata is not valid JSON") from None
        return cls(tensors["weight"], tensors["bias"].reshape(()), meta)

    def __repr__(self) -> str:
        return f"LinearProbe(d={self.d}, meta={self.meta})"


def train_probe(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 300,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> LinearProbe:
    """Logistic regression of ``y`` (0/1) on ``X`` ``(N, d)``: each feature standardised, then
    ``epochs`` full-batch Adam steps on the mean cross-entropy plus
    ``weight_decay / 2 * |w|^2`` (on the standardised weights; the bias is not penalised).
    The standardisation is folded into the returned probe's weight and bias."""
    X = torch.as_tensor(X).detach().double()
    y = torch.as_tensor(y).detach().double().reshape(-1)
    if X.dim() != 2 or len(X) != len(y):
        raise ProbeError(f"X must be (N, d) and y (N,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if not torch.all((y == 0) | (y == 1)):
        raise ProbeError("labels must be 0 or 1")
    if len(torch.unique(y)) < 2:
        raise ProbeError("a probe needs both classes of the label to train on")
    if epochs < 1 or lr <= 0 or weight_decay < 0:
        raise ProbeError("epochs and lr must be positive, weight_decay >= 0")
    mean = X.mean(0)
    std = X.std(0).clamp_min(1e-6)
    Z = (X - mean) / std
    generator = torch.Generator().manual_seed(seed)
    w = (torch.randn(X.shape[1], generator=generator, dtype=torch.float64) * 1e-3).requires_grad_()
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([w, b], lr=lr)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Z @ w + b, y)
        loss = loss + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        weight = w / std
        bias = b - (weight * mean).sum()
    meta = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "seed": seed}
    return LinearProbe(weight.float(), bias.float(), meta)


def group_accuracies(pred: Any, label: Any, group: Any) -> dict[str, float]:
    """``task_acc`` (pred == label), ``spurious_acc`` (pred == group), the accuracy of each
    (label, group) cell as ``label{l}_group{g}`` (NaN for an empty cell) and
    ``worst_group_acc``, the lowest over the non-empty cells."""
    pred, label, group = (torch.as_tensor(v).long().reshape(-1) for v in (pred, label, group))
    if not len(pred) == len(label) == len(group):
        raise ValueError(
            f"pred, label and group differ in length: {len(pred)}, {len(label)}, {len(group)}"
        )
    if len(pred) == 0:
        raise ValueError("no predictions")
    correct = (pred == label).float()
    result = {
        "task_acc": correct.mean().item(),
        "spurious_acc": (pred == group).float().mean().item(),
    }
    cells = []
    for lab in (1, 0):
        for grp in (1, 0):
            inside = (label == lab) & (group == grp)
            value = correct[inside].mean().item() if inside.any() else float("nan")
            result[f"label{lab}_group{grp}"] = value
            if inside.any():
                cells.append(value)
    result["worst_group_acc"] = min(cells)
    return result
