"""Ablation modes (circuits.model.ablation) by hand, and faithfulness's ablations against
hand-made runs on a tiny model: means over every batch of the evaluation set, aligned at the
last token, and resampling by a derangement of the prompts."""

import itertools
from collections import Counter

import pytest
import torch

from sparse_circuits.circuits.data.prompts import Example, tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import node_effects
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.nodes import NodeSelection, select_nodes
from sparse_circuits.circuits.model.ablation import PositionMean, ablation_values, derangement

from .conftest import D_MODEL, random_dictionary, tiny_model
from .reference import EXAMPLES, PLACES, capture, run_frozen

D_SAE = 24

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


# --- faithfulness against hand-made runs ----------------------------------------------------

ONE_LENGTH = [  # 5 clean tokens each; the last has a 4-token patch, so a batch of its own
    Example("the keys to the cabinet", "are", "the key to the cabinet", "is"),
    Example("the dogs near the man", "run", "the dog near the man", "runs"),
    Example("the cats of the woman", "were", "the cat of woman", "was"),
]
MIXED_LENGTHS = [  # 5, 5, 4 (the only one) and 6 (the only one) clean tokens
    *ONE_LENGTH[:2],
    Example("he was near the", "cat", "she was near the", "dog"),
    Example("the dogs near the man who", "run", "the dog near the man who", "runs"),
]


@pytest.fixture(scope="module")
def setup():
    model, adapter = tiny_model("llama", seed=7)
    dictionaries = {
        p: random_dictionary("topk", D_MODEL, D_SAE, seed=i) for i, p in enumerate(PLACES)
    }
    generator = seeded(3)
    selection = NodeSelection(
        {p: torch.rand(D_SAE, generator=generator) < 0.4 for p in PLACES},
        {p: torch.tensor(i % 2 == 0) for i, p in enumerate(PLACES)},
    )
    return model, adapter, dictionaries, selection


def everything():
    """place -> (kept features ``(F,)``, error kept): every node kept."""
    return {p: (torch.ones(D_SAE, dtype=torch.bool), True) for p in PLACES}


def keeps(selection: NodeSelection | None, *, invert: bool = False):
    """place -> (kept features ``(F,)``, error kept): the circuit, its complement, or nothing."""
    if selection is None:
        return {p: (torch.zeros(D_SAE, dtype=torch.bool), False) for p in PLACES}
    return {p: (selection.features[p] ^ invert, bool(selection.errors[p]) ^ invert) for p in PLACES}


def hand_metric(model, adapter, dictionaries, batch, keep, replacement) -> torch.Tensor:
    """Logit difference ``(B,)`` of a plain-PyTorch run in which every place outputs
    ``decode(f') + e'``: kept features and error as this run computes them, the others
    ``replacement[place] = (features (B, T, F), error (B, T, D))``."""
    handles = []
    for place in PLACES:
        site, d = adapter.site(place), dictionaries[place]
        (keep_f, keep_e), (f_new, e_new) = keep[place], replacement[place]

        def hook(module, inputs, output, site=site, d=d, kept=(keep_f, keep_e), new=(f_new, e_new)):
            x = output if site.index is None else output[site.index]
            f = d.encode(x)
            e = x - d.decode(f)
            value = d.decode(torch.where(kept[0], f, new[0])) + (e if kept[1] else new[1])
            return value if site.index is None else (value, *output[1:])

        handles.append(adapter.module(place).register_forward_hook(hook))
    with torch.no_grad():
        logits = model._module(batch.clean_ids).logits[:, -1]
    for handle in handles:
        handle.remove()
    rows = torch.arange(len(batch))
    return logits[rows, batch.clean_answer] - logits[rows, batch.patch_answer]


def clean_prompts(model, adapter, dictionaries, batches):
    """place -> (features, error) of every prompt, ``(T, ...)`` each, batch after batch."""
    values = {p: ([], []) for p in PLACES}
    for batch in batches:
        for place in PLACES:
            f, e = capture(model, adapter, batch.clean_ids, place, dictionaries[place])
            values[place][0].extend(f.detach())
            values[place][1].extend(e.detach())
    return values


def hand_scores(model, adapter, dictionaries, batches, selection, replacements):
    """Mean ``m(C)``, ``m(complement)``, ``m(empty)`` and ``m(M)`` over the prompts;
    ``replacements`` holds one ``replacement`` per batch (see ``hand_metric``)."""
    sums = dict.fromkeys(("circuit", "complement", "empty", "full"), 0.0)
    cases = {
        "circuit": keeps(selection),
        "complement": keeps(selection, invert=True),
        "empty": keeps(None),
        "full": everything(),
    }
    for batch, replacement in zip(batches, replacements, strict=True):
        for name, keep in cases.items():
            sums[name] += float(
                hand_metric(model, adapter, dictionaries, batch, keep, replacement).sum()
            )
    n = sum(len(b) for b in batches)
    return {name: total / n for name, total in sums.items()}


def assert_scores(score, hand):
    assert score.m_circuit == pytest.approx(hand["circuit"], abs=1e-4)
    assert score.m_complement == pytest.approx(hand["complement"], abs=1e-4)
    assert score.m_empty == pytest.approx(hand["empty"], abs=1e-4)
    assert score.m_full == pytest.approx(hand["full"], abs=1e-4)
    span = hand["full"] - hand["empty"]
    assert score.faithfulness == pytest.approx((hand["circuit"] - hand["empty"]) / span, abs=1e-3)


def test_mean_ablation_matches_a_hand_made_run(setup):
    model, adapter, dictionaries, _ = setup
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    effects = node_effects(model, adapter, dictionaries, [batch], progress=False)
    selection = select_nodes(effects, top_k=8)
    (score,) = score_selection(model, adapter, dictionaries, [batch], [selection], progress=False)
    # by hand: every place outputs decode(kept features + clean mean elsewhere) + error
    clean = {p: capture(model, adapter, batch.clean_ids, p, dictionaries[p]) for p in PLACES}
    means = {
        p: tuple(t.detach().mean(0, keepdim=True).expand_as(t) for t in clean[p]) for p in PLACES
    }
    m_circuit = hand_metric(model, adapter, dictionaries, batch, keeps(selection), means).mean()
    assert score.m_circuit == pytest.approx(m_circuit.item(), abs=1e-4)
    _, m_full = run_frozen(model, adapter, batch, {})
    assert score.m_full == pytest.approx(m_full.mean().item(), abs=1e-4)


def test_mean_spans_every_batch_of_a_length(setup):
    model, adapter, dictionaries, selection = setup
    batches = tokenize_prompts(model.tokenizer, ONE_LENGTH)
    assert [(b.length, len(b)) for b in batches] == [(5, 1), (5, 2)]  # a group of one prompt
    (score,) = score_selection(
        model, adapter, dictionaries, batches, [selection], ablation="mean", progress=False
    )
    clean = clean_prompts(model, adapter, dictionaries, batches)
    means = {p: tuple(torch.stack(v).mean(0) for v in clean[p]) for p in PLACES}  # all 3 prompts
    replacements = [
        {p: tuple(m.expand(len(b), *m.shape) for m in means[p]) for p in PLACES} for b in batches
    ]
    hand = hand_scores(model, adapter, dictionaries, batches, selection, replacements)
    assert_scores(score, hand)
    # the lone prompt of its batch is ablated: with every node ablated its metric moves
    alone, replacement = batches[0], replacements[0]
    emptied = hand_metric(model, adapter, dictionaries, alone, keeps(None), replacement)
    full = hand_metric(model, adapter, dictionaries, alone, everything(), replacement)
    assert abs(float(emptied - full)) > 1e-3


def test_mean_aligns_prompts_of_every_length_at_their_last_token(setup):
    model, adapter, dictionaries, selection = setup
    batches = tokenize_prompts(model.tokenizer, MIXED_LENGTHS)
    assert [(b.length, len(b)) for b in batches] == [(4, 1), (5, 2), (6, 1)]
    (score,) = score_selection(
        model, adapter, dictionaries, batches, [selection], ablation="mean", progress=False
    )
    clean = clean_prompts(model, adapter, dictionaries, batches)

    def aligned_mean(prompts, length):
        """Position t of a prompt of ``length`` tokens: the mean over the prompts with a
        token as many places before their last."""
        before_last = [length - 1 - t for t in range(length)]
        return torch.stack(
            [
                torch.stack([v[len(v) - 1 - k] for v in prompts if len(v) > k]).mean(0)
                for k in before_last
            ]
        )

    replacements = [
        {
            p: tuple(aligned_mean(v, b.length).expand(len(b), b.length, -1) for v in clean[p])
            for p in PLACES
        }
        for b in batches
    ]
    hand = hand_scores(model, adapter, dictionaries, batches, selection, replacements)
    assert_scores(score, hand)
    # the 4-token prompt, the only one of its length, takes the means of all four prompts
    four = replacements[0]["resid.1"][0][0]
    every = torch.stack([v[-4:] for v in clean["resid.1"][0]]).mean(0)
    torch.testing.assert_close(four, every)
    # the first token of the 6-token prompt is its own: no other prompt has it
    torch.testing.assert_close(replacements[2]["resid.1"][0][0, 0], clean["resid.1"][0][-1][0])


def test_resample_takes_each_prompt_from_another(setup):
    model, adapter, dictionaries, selection = setup
    batches = tokenize_prompts(model.tokenizer, ONE_LENGTH)
    clean = clean_prompts(model, adapter, dictionaries, batches)  # prompts in batch order
    # the two derangements of 3 prompts: each prompt i takes prompt partners[i]
    hands = {}
    for partners in ((1, 2, 0), (2, 0, 1)):
        replacements, start = [], 0
        for b in batches:
            rows = partners[start : start + len(b)]
            replacements.append(
                {p: tuple(torch.stack([v[r] for r in rows]) for v in clean[p]) for p in PLACES}
            )
            start += len(b)
        hands[partners] = hand_scores(
            model, adapter, dictionaries, batches, selection, replacements
        )
    assert abs(hands[(1, 2, 0)]["empty"] - hands[(2, 0, 1)]["empty"]) > 1e-3
    seen = set()
    for seed in range(8):
        (score,) = score_selection(
            model,
            adapter,
            dictionaries,
            batches,
            [selection],
            ablation="resample",
            seed=seed,
            progress=False,
        )
        matching = [
            p
            for p, hand in hands.items()
            if score.m_empty == pytest.approx(hand["empty"], abs=1e-4)
        ]
        assert len(matching) == 1, seed
        assert_scores(score, hands[matching[0]])
        seen.add(matching[0])
    assert seen == set(hands)


def test_ablation_needs_other_prompts(setup):
    model, adapter, dictionaries, selection = setup
    mixed = tokenize_prompts(model.tokenizer, MIXED_LENGTHS)
    with pytest.raises(ValueError, match="but prompt 3 of the set is the only one of 4 tokens"):
        score_selection(
            model, adapter, dictionaries, mixed, [selection], ablation="resample", progress=False
        )
    one = tokenize_prompts(model.tokenizer, ONE_LENGTH[:1])
    with pytest.raises(ValueError, match="mean ablation needs at least 2 prompts"):
        score_selection(model, adapter, dictionaries, one, [selection], progress=False)
    with pytest.raises(ValueError, match="ablation must be one of zero, mean, resample"):
        score_selection(
            model, adapter, dictionaries, one, [selection], ablation="median", progress=False
        )
