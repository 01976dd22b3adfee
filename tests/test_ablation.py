"""Ablation modes (circuits.model.ablation) by hand."""

import itertools
from collections import Counter

import pytest
import torch

from sparse_circuits.circuits.model.ablation import PositionMean, ablation_values, derangement

# --- the modes by hand ----------------------------------------------------------------------


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", range(2, 8))
def test_resample_by_derangement_never_keeps_a_row(n):
    values = torch.arange(n * 3 * 2, dtype=torch.float32).reshape(n, 3, 2)  # rows all distinct
    for seed in range(200):
        order = derangement(n, generator=seeded(seed))
        assert sorted(order.tolist()) == list(range(n))
        resampled = ablation_values("resample", values, reference=values, rows=order)
        assert resampled.shape == values.shape
        for row in range(n):
            assert not torch.equal(resampled[row], values[row]), (n, seed, row)
            assert torch.equal(resampled[row], values[order[row]])


def test_derangements_are_drawn_uniformly():
    # n = 4 has 9 derangements: 6 four-cycles and 3 pairs of swaps (Sattolo gives no swaps)
    expected = [p for p in itertools.permutations(range(4)) if all(p[i] != i for i in range(4))]
    counts = Counter(tuple(derangement(4, generator=seeded(s)).tolist()) for s in range(900))
    assert sorted(counts) == sorted(expected)
    assert all(60 <= c <= 140 for c in counts.values()), counts  # 100 each; 4 sd is about 38
    with pytest.raises(ValueError, match="at least 2 elements, got 1"):
        derangement(1, generator=seeded(0))


def test_position_mean_aligns_prompts_at_their_last_token():
    generator = seeded(1)
    batches = [torch.randn(b, t, 2, generator=generator) for b, t in [(2, 3), (1, 5), (3, 3)]]
    prompts = [prompt for batch in batches for prompt in batch]  # each (T, 2)
    means = PositionMean()
    for batch in batches:
        means.add(batch)
    for length in (1, 3, 4, 5):
        expected = torch.stack(
            [
                torch.stack([p[t - length] for p in prompts if len(p) >= length - t]).mean(0)
                for t in range(length)
            ]
        )
        torch.testing.assert_close(means.for_length(length), expected)
    # the two first positions of the one 5-token prompt: only it has them
    torch.testing.assert_close(means.for_length(5)[:2], batches[1][0, :2])
    # the last position: every one of the 6 prompts
    last = torch.cat([batch[:, -1] for batch in batches]).mean(0)
    torch.testing.assert_close(means.for_length(3)[-1], last)
    with pytest.raises(ValueError, match="no prompt of 6 tokens was added"):
        means.for_length(6)


def test_ablation_values_of_every_mode():
    values = torch.randn(2, 3, 4)
    assert torch.equal(ablation_values("zero", values), torch.zeros(2, 3, 4))
    per_position = torch.randn(3, 4)
    mean = ablation_values("mean", values, reference=per_position)
    assert torch.equal(mean[0], per_position) and torch.equal(mean[1], per_position)
    per_feature = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(ablation_values("mean", values, reference=per_feature)[1, 2], per_feature)
    pool = torch.randn(5, 4)
    rows = torch.tensor([[0, 4, 4], [1, 2, 3]])
    drawn = ablation_values("resample", values, reference=pool, rows=rows)
    for b, t in itertools.product(range(2), range(3)):
        assert torch.equal(drawn[b, t], pool[rows[b, t]])
    with pytest.raises(ValueError, match=r"shape \(5, 4\), which does not fit .* \(2, 3, 4\)"):
        ablation_values("mean", values, reference=pool)
    with pytest.raises(ValueError, match="mean ablation needs the reference values"):
        ablation_values("mean", values)
    with pytest.raises(ValueError, match="needs the rows of the pool"):
        ablation_values("resample", values, reference=pool)
    with pytest.raises(ValueError, match="ablation must be one of zero, mean, resample, got 'one'"):
        ablation_values("one", values)
