"""How closely two computations of a circuit's numbers agree, e.g. bfloat16 against float32 on
the same inputs (the tests and ``benchmarks/precision_model.py`` use it).

1. Line the two up: every node effect (features and errors, place by place) or every edge
   weight (the union of both edge sets, a missing edge weighing 0).
2. Keep the entries that matter: ``|value|`` at least ``floor`` times the largest ``|value|``,
   in either of the two (an entry one side inflates counts too).
3. Spearman rank correlation of the two over the kept entries (ties take their mean rank):
   do both order the nodes the same way?
4. Overlap of the ``top`` largest ``|value|`` of each: do both pick the same circuit?
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparse_circuits.circuits.discovery.nodes import NodeEffects

__all__ = ["Agreement", "compare_edges", "compare_effects", "compare_values", "spearman"]


@dataclass(frozen=True)
class Agreement:
    spearman: float
    """Rank correlation over the entries above the floor (1.0 with fewer than two)."""
    top_overlap: float
    """Share of the reference's ``top`` entries by |value| that are among the other's."""
    n_compared: int
    """Entries above the floor."""
    largest_difference: float
    """Largest |difference| over all entries, as a share of the reference's largest |value|."""


def _ranks(x_N: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64 ranks from 0, tied values sharing their mean rank."""
    ranks = torch.empty(len(x_N), dtype=torch.float64)
    ranks[x_N.argsort()] = torch.arange(len(x_N), dtype=torch.float64)
    _, tie, counts = torch.unique(x_N, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, tie, ranks)
    return (sums / counts)[tie]


def spearman(a_N: torch.Tensor, b_N: torch.Tensor) -> float:
    """Spearman rank correlation of two ``(N,)`` vectors: the Pearson correlation of their
    ranks."""
    ra, rb = _ranks(a_N) - (len(a_N) - 1) / 2, _ranks(b_N) - (len(b_N) - 1) / 2
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def _above(x_N: torch.Tensor, floor: float) -> torch.Tensor:
    """``(N,)``: the entries whose |value| reaches ``floor`` times the largest (none of a zero
    vector)."""
    magnitude_N = x_N.abs()
    return (magnitude_N >= floor * magnitude_N.max()) & (magnitude_N > 0)


def compare_values(
    reference_N: torch.Tensor, other_N: torch.Tensor, *, floor: float = 0.01, top: int = 100
) -> Agreement:
    """Agreement of two ``(N,)`` vectors of the same entries (steps 2 to 4)."""
    reference_N, other_N = reference_N.double().flatten(), other_N.double().flatten()
    if reference_N.shape != other_N.shape:
        raise ValueError(f"cannot compare {len(reference_N)} values with {len(other_N)}")
    largest = float(reference_N.abs().max()) if len(reference_N) else 0.0
    if largest == 0.0:
        raise ValueError("the reference is all zeros: nothing to compare")
    kept = _above(reference_N, floor) | _above(other_N, floor)
    rho = spearman(reference_N[kept], other_N[kept]) if int(kept.sum()) > 1 else 1.0
    k = min(top, len(reference_N))
    top_reference = set(reference_N.abs().topk(k).indices.tolist())
    top_other = set(other_N.abs().topk(k).indices.tolist())
    return Agreement(
        spearman=rho,
        top_overlap=len(top_reference & top_other) / k,
        n_compared=int(kept.sum()),
        largest_difference=float((reference_N - other_N).abs().max()) / largest,
    )


def _effects_vector(effects: NodeEffects) -> torch.Tensor:
    """Every node effect, place by place (features, then the error), flattened."""
    parts = []
    for place in effects.features:
        parts += [effects.features[place].flatten(), effects.errors[place].flatten()]
    return torch.cat(parts)


def compare_effects(
    reference: NodeEffects, other: NodeEffects, *, floor: float = 0.01, top: int = 100
) -> Agreement:
    """Agreement of two node-effect computations over the same places and prompts."""
    if list(reference.features) != list(other.features):
        raise ValueError(
            f"node effects of different places: {list(reference.features)} and "
            f"{list(other.features)}"
        )
    return compare_values(_effects_vector(reference), _effects_vector(other), floor=floor, top=top)


def compare_edges(
    reference: dict, other: dict, *, floor: float = 0.01, top: int = 100
) -> Agreement:
    """Agreement of two edge computations (``edge_effects`` results), over the union of
    their edges."""
    keys = sorted(reference.keys() | other.keys())
    return compare_values(
        torch.tensor([reference.get(key, 0.0) for key in keys]),
        torch.tensor([other.get(key, 0.0) for key in keys]),
        floor=floor,
        top=top,
    )
