"""Edge weights against perturbing one upstream node with every other place frozen."""

import pytest
import torch

from circuits.attribution import node_effects
from circuits.edges import METRIC_NODE, NodeSelection, edge_effects
from circuits.prompts import tokenize_prompts

from .conftest import D_MODEL, random_dictionary, tiny_model
from .test_attribution import EXAMPLES, capture

PLACES = ["resid.0", "attn.1", "mlp.1", "resid.1", "resid.2"]


@pytest.fixture(scope="module")
def setup():
    model, adapter = tiny_model("llama", seed=5)
    dictionaries = {p: random_dictionary("topk", D_MODEL, 24, seed=i) for i, p in enumerate(PLACES)}
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    selection = NodeSelection(
        features={p: torch.ones(24, dtype=torch.bool) for p in PLACES},
        errors={p: torch.tensor(True) for p in PLACES},
    )
    edges = edge_effects(model, adapter, dictionaries, [batch], selection, progress=False)
    return model, adapter, dictionaries, batch, selection, edges


def run_frozen(model, adapter, dictionaries, batch, frozen, replace=None, read=None):
    """Plain-PyTorch run: every place in ``frozen`` outputs its given constant, ``replace``
    maps a place to a function of nothing giving its output; returns the activation at
    ``read`` and the metric."""
    handles, store = [], {}
    for place in PLACES:
        site = adapter.site(place)

        def hook(module, inputs, output, place=place, site=site):
            current = output if site.index is None else output[site.index]
            store[place] = current
            value = None
            if replace and place in replace:
                value = replace[place]()
            elif place in frozen:
                value = frozen[place]
            if value is None:
                return None
            return value if site.index is None else (value, *output[1:])

        handles.append(adapter.module(place).register_forward_hook(hook))
    logits = model._module(batch.clean_ids).logits[:, -1]
    for handle in handles:
        handle.remove()
    rows = torch.arange(len(batch))
    metric = logits[rows, batch.clean_answer] - logits[rows, batch.patch_answer]
    return (store.get(read), metric)


def test_edge_matches_perturbing_one_upstream_node(setup):
    model, adapter, dictionaries, batch, _, edges = setup
    clean = {p: capture(model, adapter, batch.clean_ids, p, dictionaries[p]) for p in PLACES}
    patch = {p: capture(model, adapter, batch.patch_ids, p, dictionaries[p]) for p in PLACES}
    frozen = {p: dictionaries[p].decode(f) + e for p, (f, e) in clean.items()}
    for up, down in (
        ("resid.0", "attn.1"),
        ("attn.1", "mlp.1"),
        ("mlp.1", "resid.1"),
        ("resid.0", "resid.1"),
        ("resid.1", "resid.2"),
    ):
        d_up, d_down = dictionaries[up], dictionaries[down]
        f_u, e_u = clean[up]
        delta_u = patch[up][0] - f_u
        # d m / d f_down: total gradient, by autograd through plain hooks
        f_leaf = clean[down][0].clone().requires_grad_(True)
        e_const = clean[down][1]
        others = {p: v for p, v in frozen.items() if p != down}
        _, metric = run_frozen(
            model,
            adapter,
            dictionaries,
            batch,
            {},
            replace={down: lambda d=d_down, f=f_leaf, e=e_const: d.decode(f) + e},
        )
        (grad_down,) = torch.autograd.grad(metric.sum(), f_leaf)
        u = int(delta_u.abs().sum((0, 1)).argmax())
        eps = 1e-3
        values = []
        for scale in (0.0, eps):
            f = f_u.clone()
            f[..., u] += scale * delta_u[..., u]
            frozen_now = {**others, up: d_up.decode(f) + e_u}
            frozen_now.pop(down, None)
            with torch.no_grad():
                x_down, _ = run_frozen(model, adapter, dictionaries, batch, frozen_now, read=down)
            values.append(d_down.encode(x_down))
        derivative = (values[1] - values[0]) / eps
        for d in range(24):
            expected = (grad_down[..., d] * derivative[..., d]).sum() / len(batch)
            got = edges.get(((up, u, -1), (down, d, -1)), 0.0)
            assert got == pytest.approx(expected.item(), abs=3e-3, rel=3e-2), (up, down, d)


def test_no_edge_without_a_direct_path(setup):
    *_, edges = setup
    # resid.1 is spliced, so nothing of resid.0 reaches resid.2 or the metric directly;
    # resid.0 does reach mlp.1 directly (the residual stream around the held attention)
    assert not any(u[0] == "resid.0" and d[0] == "resid.2" for u, d in edges)
    assert any(u[0] == "resid.0" and d[0] == "mlp.1" for u, d in edges)
    assert not any(u[0] == "resid.0" and d == METRIC_NODE for u, d in edges)


def test_edges_into_the_metric_equal_last_place_node_effects(setup):
    model, adapter, dictionaries, batch, _, edges = setup
    effects = node_effects(model, adapter, dictionaries, [batch], progress=False)
    for feature in range(24):
        expected = effects.features["resid.2"][feature].item()
        assert edges.get((("resid.2", feature, -1), METRIC_NODE), 0.0) == pytest.approx(
            expected, abs=1e-5, rel=1e-4
        )


def test_batched_equals_one_backward_per_node(setup):
    model, adapter, dictionaries, batch, selection, edges = setup
    looped = edge_effects(
        model, adapter, dictionaries, [batch], selection, batched=False, progress=False
    )
    assert looped.keys() == edges.keys()
    for key, weight in edges.items():
        assert looped[key] == pytest.approx(weight, abs=1e-6, rel=1e-5)
