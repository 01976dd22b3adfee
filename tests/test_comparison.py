"""The agreement figures of ``circuits.discovery.comparison`` against hand computations."""

import pytest
import torch

from sparse_circuits.circuits.discovery.comparison import (
    compare_edges,
    compare_effects,
    compare_values,
    spearman,
)
from sparse_circuits.circuits.discovery.nodes import NodeEffects


def test_spearman_by_the_textbook_formula():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    b = torch.tensor([2.0, 1.0, 4.0, 3.0, 5.0])
    # no ties: 1 - 6 sum(d^2) / (n (n^2 - 1)), rank differences 1, 1, 1, 1, 0
    assert spearman(a, b) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert spearman(a, a.exp()) == pytest.approx(1.0)  # ranks only: any increasing map
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_spearman_gives_tied_values_their_mean_rank():
    a = torch.tensor([1.0, 2.0, 2.0, 3.0])  # ranks 0, 1.5, 1.5, 3
    b = torch.tensor([1.0, 2.0, 3.0, 4.0])  # ranks 0, 1, 2, 3
    ra, rb = torch.tensor([-1.5, 0.0, 0.0, 1.5]), torch.tensor([-1.5, -0.5, 0.5, 1.5])
    expected = float((ra * rb).sum() / (ra.norm() * rb.norm()))
    assert spearman(a, b) == pytest.approx(expected)


def test_floor_top_overlap_and_largest_difference():
    reference = torch.tensor([10.0, -8.0, 5.0, 0.05, 0.01, 0.0])
    other = torch.tensor([9.0, -8.5, 6.0, 0.01, 0.05, 0.0])
    agreement = compare_values(reference, other, floor=0.01, top=2)
    # above 1 % of the largest (0.1 and 0.09): the first three, the same order
    assert agreement.n_compared == 3 and agreement.spearman == pytest.approx(1.0)
    assert agreement.top_overlap == 1.0  # {10, -8} and {9, -8.5}
    assert agreement.largest_difference == pytest.approx(1.0 / 10.0)
    swapped = compare_values(reference, torch.tensor([5.0, -8.0, 10.0, 0, 0, 0]), top=2)
    assert swapped.top_overlap == 0.5  # {0, 1} against {2, 1}
    # an entry only the other inflates is compared too
    inflated = compare_values(reference, torch.tensor([10.0, -8.0, 5.0, 0, 0, 9.0]), top=2)
    assert inflated.n_compared == 4


def test_nothing_to_compare_is_an_error():
    with pytest.raises(ValueError, match="reference is all zeros"):
        compare_values(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="cannot compare 3 values with 2"):
        compare_values(torch.ones(3), torch.ones(2))


def effects(features: dict, errors: dict) -> NodeEffects:
    return NodeEffects(
        features={p: torch.tensor(v) for p, v in features.items()},
        errors={p: torch.tensor(v) for p, v in errors.items()},
        aggregation="sum",
        method="attrib",
        n_examples=1,
        metric_clean=0.0,
        metric_patch=0.0,
    )


def test_effects_and_edges_are_lined_up_by_node():
    a = effects({"resid.0": [3.0, 1.0], "resid.1": [2.0]}, {"resid.0": 0.5, "resid.1": -4.0})
    b = effects({"resid.0": [3.0, 1.0], "resid.1": [2.0]}, {"resid.0": 0.5, "resid.1": -2.0})
    agreement = compare_effects(a, b, top=1)
    assert agreement.largest_difference == pytest.approx(2.0 / 4.0)
    assert agreement.top_overlap == 0.0  # the error of resid.1 against feature 0 of resid.0
    other_places = effects({"resid.1": [2.0]}, {"resid.1": -4.0})
    with pytest.raises(ValueError, match="node effects of different places"):
        compare_effects(a, other_places)
    u, v, w = ("resid.0", 1, -1), ("resid.1", 0, -1), ("metric", -1, -1)
    edges = compare_edges({(u, v): 2.0, (v, w): 1.0}, {(u, v): 2.0, (u, w): 1.0}, top=2)
    # the union of both: (u, v), (u, w), (v, w), each missing edge weighing 0
    assert edges.n_compared == 3 and edges.largest_difference == pytest.approx(1.0 / 2.0)
