"""Evaluate a dictionary inside its model: reconstruction metrics and downstream loss.

``downstream_metrics`` runs each batch of contexts three times:

1. clean: the model as it is;
2. spliced: the activation at the dictionary's place (for a transcoder, the place it writes)
   replaced by the dictionary's reconstruction alone, its error dropped;
3. zero ablation: that activation replaced by zeros.

and reports the next-token cross-entropy of each, the fraction of the loss lost to zero
ablation that the reconstruction recovers, and the KL divergence from the clean next-token
distribution to the spliced one. ``evaluate_dictionary`` adds the reconstruction metrics of
``dictionaries.evaluation`` on activations collected from the same contexts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.model.activations import collect_activations
from sparse_circuits.circuits.model.adapters import ModelAdapter, model_device
from sparse_circuits.circuits.model.splice import check_dictionaries, splice
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.dictionaries.evaluation import eval_mode, reconstruction_metrics

__all__ = ["downstream_metrics", "evaluate_dictionary"]


def _batches(contexts_NT: torch.Tensor, batch_size: int, desc: str) -> Iterator[torch.Tensor]:
    """Consecutive ``(B, T)`` slices of the contexts, with a progress bar if more than one."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    starts = range(0, len(contexts_NT), batch_size)
    for start in tqdm(starts, desc=desc, disable=len(starts) <= 1, leave=False):
        yield contexts_NT[start : start + batch_size]


def _check_contexts(contexts_NT: torch.Tensor, exclude_first: int) -> None:
    if contexts_NT.ndim != 2 or len(contexts_NT) == 0:
        raise ValueError(
            f"contexts must be a non-empty (N, T) tensor of token ids, got {tuple(contexts_NT.shape)}"
        )
    if exclude_first < 0:
        raise ValueError(f"exclude_first must be >= 0, got {exclude_first}")
    if contexts_NT.shape[1] - 1 <= exclude_first:
        raise ValueError(
            f"contexts of {contexts_NT.shape[1]} tokens leave no next-token prediction after "
            f"excluding the first {exclude_first}"
        )


def _drop_error(place: str, error: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(error)


def _clean_logits(model: Any, ids_BT: torch.Tensor) -> torch.Tensor:
    with model.trace(ids_BT):
        logits = model.output.logits.save()
    return logits


def _spliced_logits(
    model: Any, adapter: ModelAdapter, dictionary: Dictionary, place: str, ids_BT: torch.Tensor
) -> torch.Tensor:
    with model.trace(ids_BT):
        splice(adapter, {place: dictionary}, edit_error=_drop_error)
        logits = model.output.logits.save()
    return logits


def _zero_ablated_logits(
    model: Any, adapter: ModelAdapter, place: str, ids_BT: torch.Tensor
) -> torch.Tensor:
    with model.trace(ids_BT):
        activation = adapter.read(place)
        adapter.write(place, torch.zeros_like(activation))
        logits = model.output.logits.save()
    return logits


def _predicted_logprobs(logits_BTV: torch.Tensor, exclude_first: int) -> torch.Tensor:
    """``(B, T - 1 - exclude_first, V)`` float32 log-probabilities of the scored predictions."""
    return torch.log_softmax(logits_BTV[:, exclude_first:-1].float(), dim=-1)


def _nll_sum(logprobs_BPV: torch.Tensor, targets_BP: torch.Tensor) -> float:
    """Summed negative log-likelihood of the targets, in float64."""
    picked_BP = logprobs_BPV.gather(-1, targets_BP.unsqueeze(-1)).squeeze(-1)
    return -picked_BP.double().sum().item()


def _kl_sum(clean_BPV: torch.Tensor, other_BPV: torch.Tensor) -> float:
    """``sum over predictions of KL(clean || other)``, from log-probabilities."""
    kl_BP = (clean_BPV.exp() * (clean_BPV - other_BPV)).sum(-1)
    return kl_BP.double().sum().item()


def downstream_metrics(
    model: Any,
    adapter: ModelAdapter,
    dictionary: Dictionary,
    place: str,
    contexts_NT: torch.Tensor,
    *,
    batch_size: int = 8,
    exclude_first: int = 1,
) -> dict[str, float | int]:
    """Next-token loss with the dictionary's reconstruction in place of the activation.

    ``contexts_NT`` are token ids ``(N, T)``. Position ``t`` predicts token ``t + 1``; the
    predictions of the first ``exclude_first`` positions (BOS, attention sinks) are not scored,
    so each context contributes ``T - 1 - exclude_first`` predictions. For a transcoder,
    ``place`` may name the place it reads or the one it writes; the written one is replaced.

    Returns token-weighted means over all scored predictions:

    - ``ce_clean``, ``ce_spliced`` (reconstruction alone, error dropped), ``ce_zero_ablation``
      (activation set to zeros): cross-entropies in nats;
    - ``ce_loss_recovered = (ce_zero_ablation - ce_spliced) / (ce_zero_ablation - ce_clean)``
      (1: as good as the model; 0: no better than zeros; NaN if zero ablation costs nothing);
    - ``kl``: mean ``KL(clean next-token distribution || spliced one)``;
    - ``n_predictions``: how many predictions were scored.
    """
    dictionary.config.require_one_place("evaluating one dictionary")
    place = dictionary.config.replaces(place)
    check_dictionaries(adapter, {place: dictionary})
    _check_contexts(contexts_NT, exclude_first)
    device = model_device(model)
    n_predictions = 0
    nll = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    kl = 0.0
    with torch.no_grad(), eval_mode(dictionary):
        for ids_BT in _batches(contexts_NT, batch_size, "downstream loss"):
            ids_BT = ids_BT.to(device)
            targets_BP = ids_BT[:, exclude_first + 1 :]
            n_predictions += targets_BP.numel()
            clean_BPV = _predicted_logprobs(_clean_logits(model, ids_BT), exclude_first)
            nll["clean"] += _nll_sum(clean_BPV, targets_BP)
            spliced_BTV = _spliced_logits(model, adapter, dictionary, place, ids_BT)
            spliced_BPV = _predicted_logprobs(spliced_BTV, exclude_first)
            del spliced_BTV
            nll["spliced"] += _nll_sum(spliced_BPV, targets_BP)
            kl += _kl_sum(clean_BPV, spliced_BPV)
            del spliced_BPV, clean_BPV
            zero_BPV = _predicted_logprobs(
                _zero_ablated_logits(model, adapter, place, ids_BT), exclude_first
            )
            nll["zero"] += _nll_sum(zero_BPV, targets_BP)
            del zero_BPV
    ce_clean, ce_spliced, ce_zero = (nll[k] / n_predictions for k in ("clean", "spliced", "zero"))
    lost = ce_zero - ce_clean
    return {
        "ce_clean": ce_clean,
        "ce_spliced": ce_spliced,
        "ce_zero_ablation": ce_zero,
        "ce_loss_recovered": (ce_zero - ce_spliced) / lost if lost != 0 else math.nan,
        "kl": kl / n_predictions,
        "n_predictions": n_predictions,
    }


def _activation_batches(
    model: Any,
    adapter: ModelAdapter,
    read: str,
    write: str,
    contexts_NT: torch.Tensor,
    batch_size: int,
    exclude_first: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x (N, d_in), y (N, d_out))`` per batch of contexts, first positions left out."""
    device = model_device(model)
    for ids_BT in _batches(contexts_NT, batch_size, "activations"):
        acts = collect_activations(model, adapter, ids_BT.to(device), sorted({read, write}))
        x_ND = acts[read][:, exclude_first:].flatten(0, 1)
        y_ND = acts[write][:, exclude_first:].flatten(0, 1)
        yield x_ND, y_ND


def evaluate_dictionary(
    model: Any,
    adapter: ModelAdapter,
    dictionary: Dictionary,
    contexts_NT: torch.Tensor,
    *,
    place: str | None = None,
    batch_size: int = 8,
    exclude_first: int = 1,
) -> dict[str, Any]:
    """Reconstruction and downstream metrics of one dictionary on the same contexts.

    ``place`` defaults to the dictionary's own (``config.place``; for a transcoder the place it
    writes). Reconstruction metrics use the activations at every position from
    ``exclude_first`` on; downstream ones are those of ``downstream_metrics``.

    Returns one flat dict of floats and ints: ``fvu``, ``l0``, ``dead_fraction``,
    ``shrinkage``, ``n_tokens``, ``ce_clean``, ``ce_spliced``, ``ce_zero_ablation``,
    ``ce_loss_recovered``, ``kl``, ``n_predictions``; plus ``feature_density``, a ``(d_sae,)``
    tensor, which callers storing the metrics (e.g. in ``config.metrics``) should pop.
    """
    dictionary.config.require_one_place("evaluating one dictionary")
    write = dictionary.config.replaces(place)
    read = dictionary.config.place if dictionary.config.is_transcoder else write
    check_dictionaries(adapter, {write: dictionary})
    _check_contexts(contexts_NT, exclude_first)
    batches = _activation_batches(
        model, adapter, read, write, contexts_NT, batch_size, exclude_first
    )
    metrics = reconstruction_metrics(dictionary, batches)
    metrics.update(
        downstream_metrics(
            model,
            adapter,
            dictionary,
            write,
            contexts_NT,
            batch_size=batch_size,
            exclude_first=exclude_first,
        )
    )
    metrics["feature_density"] = metrics.pop("feature_density")  # the one non-scalar, last
    return metrics
