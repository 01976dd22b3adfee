"""Node effects against independent computations with plain PyTorch hooks."""

import pytest
import torch

from sparse_circuits.circuits.data.prompts import Example, tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.metrics import ProbeLogit

from .conftest import D_MODEL, random_dictionary, tiny_model

EXAMPLES = [
    Example("the keys to the cabinet", "are", "the key to the cabinet", "is"),
    Example("the dogs near the man", "run", "the dog near the man", "runs"),
    Example("the cats of the woman", "were", "the cat of the woman", "was"),
]
PLACES = ["resid.0", "attn.1", "mlp.1", "resid.1", "resid.2"]


@pytest.fixture(scope="module")
def setup():
    model, adapter = tiny_model("llama", seed=3)
    dictionaries = {
        place: random_dictionary("relu", D_MODEL, 32, seed=i) for i, place in enumerate(PLACES)
    }
    batches = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)
    return model, adapter, dictionaries, batches[0]


def capture(model, adapter, ids, place, dictionary):
    """Features and error at a place, by a plain forward hook (no nnsight)."""
    site, store = adapter.site(place), {}

    def hook(module, inputs, output):
        store["x"] = output if site.index is None else output[site.index]

    handle = adapter.module(place).register_forward_hook(hook)
    with torch.no_grad():
        model._module(ids)
    handle.remove()
    f = dictionary.encode(store["x"])
    return f, store["x"] - dictionary.decode(f)


def metric_with(model, adapter, batch, place=None, dictionary=None, f=None, e=None):
    """Logit diff with a place's output replaced by decode(f) + e (plain PyTorch)."""
    handle = None
    if place is not None:
        site = adapter.site(place)

        def hook(module, inputs, output):
            value = dictionary.decode(f) + e
            return value if site.index is None else (value, *output[1:])

        handle = adapter.module(place).register_forward_hook(hook)
    with torch.no_grad():
        logits = model._module(batch.clean_ids).logits[:, -1]
    if handle:
        handle.remove()
    rows = torch.arange(len(batch))
    return logits[rows, batch.clean_answer] - logits[rows, batch.patch_answer]


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
