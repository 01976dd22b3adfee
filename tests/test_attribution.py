"""Node effects against independent computations with plain PyTorch hooks, for every
dictionary architecture."""

import pytest
import torch

from sparse_circuits.circuits.data.prompts import tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.metrics import ProbeLogit

from .conftest import ALL_ARCHS, D_MODEL, random_dictionary, tiny_model
from .reference import EXAMPLES, PLACES, capture, run_frozen


@pytest.fixture(scope="module", params=ALL_ARCHS)
def setup(request):
    """A tiny Llama with a random dictionary of one architecture at every place of ``PLACES``."""
    model, adapter = tiny_model("llama", seed=3)
    dictionaries = {
        place: random_dictionary(request.param, D_MODEL, 32, seed=i)
        for i, place in enumerate(PLACES)
    }
    batches = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)
    return model, adapter, dictionaries, batches[0]


def metric_with(model, adapter, batch, place=None, dictionary=None, f=None, e=None):
    """Logit diff with a place's output replaced by decode(f) + e (plain PyTorch)."""
    frozen = {} if place is None else {place: dictionary.decode(f) + e}
    with torch.no_grad():
        return run_frozen(model, adapter, batch, frozen)[1]


def brute_force(model, adapter, dictionaries, batch, place):
    """Exact effect of patching each feature (all positions) and the error, one at a time."""
    d = dictionaries[place]
    f_c, e_c = capture(model, adapter, batch.clean_ids, place, d)
    f_p, e_p = capture(model, adapter, batch.patch_ids, place, d)
    base = metric_with(model, adapter, batch)
    effects = torch.zeros(d.d_sae)
    for i in range(d.d_sae):
        f = f_c.clone()
        f[..., i] = f_p[..., i]
        effects[i] = (metric_with(model, adapter, batch, place, d, f, e_c) - base).mean()
    error = (metric_with(model, adapter, batch, place, d, f_c, e_p) - base).mean()
    return effects, error, (f_c, e_c, f_p, e_p, base)


def test_exact_equals_brute_force_patching(setup):
    model, adapter, dictionaries, batch = setup
    effects = node_effects(
        model,
        adapter,
        dictionaries,
        [batch],
        config=AttributionConfig(method="exact"),
        progress=False,
    )
    for place in ("resid.0", "mlp.1", "resid.2"):
        expected_f, expected_e, _ = brute_force(model, adapter, dictionaries, batch, place)
        torch.testing.assert_close(effects.features[place], expected_f, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(effects.errors[place], expected_e, atol=1e-5, rtol=1e-4)


def test_attrib_is_the_first_order_term(setup):
    model, adapter, dictionaries, batch = setup
    effects = node_effects(model, adapter, dictionaries, [batch], progress=False)
    place = "attn.1"
    d = dictionaries[place]
    f_c, e_c = capture(model, adapter, batch.clean_ids, place, d)
    f_p, e_p = capture(model, adapter, batch.patch_ids, place, d)
    base = metric_with(model, adapter, batch, place, d, f_c, e_c)
    eps = 1e-3
    delta = f_p - f_c
    changed = delta.abs().sum((0, 1)).topk(3).indices
    for i in changed.tolist():
        f = f_c.clone()
        f[..., i] += eps * delta[..., i]
        derivative = (metric_with(model, adapter, batch, place, d, f, e_c) - base) / eps
        torch.testing.assert_close(
            effects.features[place][i], derivative.mean(), atol=2e-3, rtol=2e-2
        )
    derivative_e = (
        metric_with(model, adapter, batch, place, d, f_c, e_c + eps * (e_p - e_c)) - base
    ) / eps
    torch.testing.assert_close(effects.errors[place], derivative_e.mean(), atol=2e-3, rtol=2e-2)


def test_ig_converges_to_patching_the_whole_place(setup):
    model, adapter, dictionaries, batch = setup
    place = "mlp.1"
    d = dictionaries[place]
    f_c, e_c = capture(model, adapter, batch.clean_ids, place, d)
    f_p, e_p = capture(model, adapter, batch.patch_ids, place, d)
    total = (
        metric_with(model, adapter, batch, place, d, f_p, e_p)
        - metric_with(model, adapter, batch, place, d, f_c, e_c)
    ).mean()
    gaps = []
    for steps in (1, 4, 32):
        effects = node_effects(
            model,
            adapter,
            {place: d},
            [batch],
            config=AttributionConfig(method="ig", steps=steps),
            progress=False,
        )
        gaps.append(abs(effects.total(place) - total.item()))
    assert gaps[2] < gaps[0] and gaps[2] < 0.05 * abs(total.item()) + 1e-4


def test_effects_add_up_where_the_metric_is_linear(setup):
    """A probe on the spliced place is linear in it: features + error = metric change."""
    model, adapter, dictionaries, batch = setup
    probe = ProbeLogit("resid.2", torch.randn(D_MODEL))
    effects = node_effects(
        model,
        adapter,
        {"resid.2": dictionaries["resid.2"]},
        [batch],
        metric=probe,
        progress=False,
    )
    change = effects.metric_patch - effects.metric_clean
    assert abs(effects.total("resid.2") - change) < 1e-4 * max(1.0, abs(change))


def test_aggregation_none_keeps_positions(setup):
    model, adapter, dictionaries, batch = setup
    summed = node_effects(model, adapter, dictionaries, [batch], progress=False)
    per_position = node_effects(
        model,
        adapter,
        dictionaries,
        [batch],
        config=AttributionConfig(aggregation="none"),
        progress=False,
    )
    T = batch.length
    assert per_position.features["resid.1"].shape == (T, 32)
    torch.testing.assert_close(per_position.features["resid.1"].sum(0), summed.features["resid.1"])
    torch.testing.assert_close(per_position.errors["resid.1"].sum(0), summed.errors["resid.1"])
