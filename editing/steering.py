"""Steering vectors, and greedy generation with and without one.

Vectors come from:

- a dictionary feature: its decoder row ``W_dec[i]`` (steering by ``c`` adds exactly ``c``
  times that row);
- weighted features: ``sum_i w_i * W_dec[i]``;
- contrastive activation addition (Rimsky et al. 2024): the mean activation at the place over
  prompt set A minus the mean over set B (each prompt's positions after the first, averaged:
  ``probe.pooled_activations``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sparse_circuits.circuits.model.adapters import ModelAdapter, model_device, torch_module
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.editing.interventions import Steering, _check_features, intervene
from sparse_circuits.editing.probe import pooled_activations
from sparse_circuits.files import jsonl_strings, read_utf8

__all__ = [
    "feature_vector",
    "features_vector",
    "contrastive_vector",
    "read_texts",
    "generate",
    "steered_generations",
]


def feature_vector(dictionary: Dictionary, feature: int, *, place: str = "") -> torch.Tensor:
    """``(d,)``: the decoder direction of one feature."""
    (feature,) = _check_features(dictionary, [feature], place or str(dictionary.config.place))
    return dictionary.W_dec[feature].detach().float().clone()


def features_vector(dictionary: Dictionary, weights: Mapping[int, float]) -> torch.Tensor:
    """``(d,)``: ``sum_i w_i * W_dec[i]``."""
    features = _check_features(dictionary, list(weights), str(dictionary.config.place))
    w = torch.tensor([float(weights[f]) for f in features])
    return (w[:, None] * dictionary.W_dec[features].detach().float()).sum(0)


def read_texts(path: str | Path) -> list[str]:
    """Prompts from a JSONL file (``text`` or ``prompt`` field per line) or a plain text file
    (one prompt per non-empty line)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        texts = [text for _, text in jsonl_strings(path, ("text", "prompt"), what="prompt file")]
    else:
        texts = [line for line in read_utf8(path, what="prompt file").split("\n") if line.strip()]
    if not texts:
        raise ValueError(f"{path}: no prompts")
    return texts


def contrastive_vector(
    model: Any, adapter: ModelAdapter, place: str, positive: Sequence[str], negative: Sequence[str]
) -> torch.Tensor:
    """``(d,)``: mean activation over ``positive`` prompts minus over ``negative`` ones (each
    prompt's positions after the first averaged; a one-token prompt gives its only one)."""
    adapter.parse(place)
    positive_ND, negative_ND = (
        pooled_activations(model, adapter, texts, place, allow_single=True)
        for texts in (positive, negative)
    )
    return positive_ND.mean(0) - negative_ND.mean(0)


def generate(model: Any, prompt: str, *, max_new_tokens: int = 30) -> str:
    """Greedy continuation of ``prompt`` (deterministic)."""
    tokenizer = model.tokenizer
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = torch_module(model).generate(
            ids.to(model_device(model)),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def steered_generations(
    model: Any,
    adapter: ModelAdapter,
    prompt: str,
    steering: Steering,
    *,
    max_new_tokens: int = 30,
) -> dict[str, str]:
    """``{"unsteered": ..., "steered": ...}`` greedy continuations of ``prompt``."""
    unsteered = generate(model, prompt, max_new_tokens=max_new_tokens)
    with intervene(adapter, [steering]):
        steered = generate(model, prompt, max_new_tokens=max_new_tokens)
    return {"unsteered": unsteered, "steered": steered}
