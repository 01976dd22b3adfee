"""Edge weights against perturbing one upstream node with every other place frozen, and the
batched edge pass against its one-backward-per-node twin."""

import pytest
import torch

from circuits.attribution import node_effects
from circuits.edges import METRIC_NODE, NodeSelection, _pack, edge_effects
from circuits.prompts import tokenize_prompts

from .conftest import ALL_ARCHS, D_MODEL, random_dictionary, tiny_model
from .test_attribution import EXAMPLES, capture

PLACES = ["resid.0", "attn.1", "mlp.1", "resid.1", "resid.2"]
D_SAE = 24


def every_node(batch, aggregation="sum"):
    shape = () if aggregation == "sum" else (batch.length,)
    return NodeSelection(
        features={p: torch.ones(*shape, D_SAE, dtype=torch.bool) for p in PLACES},
        errors={p: torch.ones(shape, dtype=torch.bool) for p in PLACES},
    )


@pytest.fixture(scope="module")
def setup():
    model, adapter = tiny_model("llama", seed=5)
    dictionaries = {
        p: random_dictionary("topk", D_MODEL, D_SAE, seed=i) for i, p in enumerate(PLACES)
    }
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    selection = every_node(batch)
    edges = edge_effects(model, adapter, dictionaries, [batch], selection, progress=False)
    return model, adapter, dictionaries, batch, selection, edges


def run_frozen(model, adapter, batch, frozen, replace=None, read=None):
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


def perturbed_edges(model, adapter, dictionaries, batch, up, down, u):
    """Weights from node ``u`` of ``up`` (a feature, or -1 for the error) to each feature and
    the error of ``down``, independently of the edge code: the total gradient at ``down`` (by
    autograd through plain hooks) times the change of ``down``'s features and error when ``u``
    moves a small step along its delta, every other place frozen at its clean value."""
    clean = {p: capture(model, adapter, batch.clean_ids, p, dictionaries[p]) for p in PLACES}
    patch = capture(model, adapter, batch.patch_ids, up, dictionaries[up])
    d_up, d_down = dictionaries[up], dictionaries[down]
    # d m / d f_down and d m / d e_down: total gradients, nothing frozen
    f_leaf, e_leaf = (t.clone().requires_grad_(True) for t in clean[down])
    _, metric = run_frozen(
        model, adapter, batch, {}, replace={down: lambda: d_down.decode(f_leaf) + e_leaf}
    )
    grad_f, grad_e = torch.autograd.grad(metric.sum(), [f_leaf, e_leaf])
    others = {p: dictionaries[p].decode(f) + e for p, (f, e) in clean.items() if p != down}
    f_u, e_u = clean[up]
    eps, values = 1e-3, []
    for scale in (0.0, eps):
        f, e = f_u.clone(), e_u.clone()
        if u >= 0:
            f[..., u] += scale * (patch[0] - f_u)[..., u]
        else:
            e += scale * (patch[1] - e_u)
        with torch.no_grad():
            x_down, _ = run_frozen(
                model, adapter, batch, {**others, up: d_up.decode(f) + e}, read=down
            )
        f_down = d_down.encode(x_down)
        values.append((f_down, x_down - d_down.decode(f_down)))
    change_f = (values[1][0] - values[0][0]) / eps
    change_e = (values[1][1] - values[0][1]) / eps
    expected = [(grad_f[..., d] * change_f[..., d]).sum() for d in range(D_SAE)]
    expected.append((grad_e * change_e).sum())
    return [w.item() / len(batch) for w in torch.stack(expected).detach()]


@pytest.mark.parametrize("upstream_kind", ["feature", "error"])
@pytest.mark.parametrize(
    "up, down",
    [
        ("resid.0", "attn.1"),
        ("attn.1", "mlp.1"),
        ("mlp.1", "resid.1"),
        ("resid.0", "resid.1"),
        ("resid.1", "resid.2"),
    ],
)
def test_edge_matches_perturbing_one_upstream_node(setup, up, down, upstream_kind):
    model, adapter, dictionaries, batch, _, edges = setup
    if upstream_kind == "feature":
        f_u, _ = capture(model, adapter, batch.clean_ids, up, dictionaries[up])
        f_patch, _ = capture(model, adapter, batch.patch_ids, up, dictionaries[up])
        u = int((f_patch - f_u).abs().sum((0, 1)).argmax())
    else:
        u = -1
    expected = perturbed_edges(model, adapter, dictionaries, batch, up, down, u)
    for d, weight in zip([*range(D_SAE), -1], expected, strict=True):
        got = edges.get(((up, u, -1), (down, d, -1)), 0.0)
        assert got == pytest.approx(weight, abs=3e-3, rel=3e-2), (up, u, down, d)


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
    for feature in range(D_SAE):
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


@pytest.mark.parametrize("aggregation", ["sum", "none"])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_batched_equals_looped_for_every_dictionary(arch, aggregation):
    """The packing assumes a feature's derivative is zero wherever the feature is: checked
    against the twin, which does not pack, for every architecture; a random half of the nodes
    is selected (none at attn.1), and small chunks force several batched passes per place."""
    model, adapter = tiny_model("llama", seed=5)
    dictionaries = {
        p: random_dictionary(arch, D_MODEL, D_SAE, seed=i) for i, p in enumerate(PLACES)
    }
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    generator = torch.Generator().manual_seed(0)
    selection = every_node(batch, aggregation)
    for masks in (selection.features, selection.errors):
        for place, mask in masks.items():
            masks[place] = torch.rand(mask.shape, generator=generator) < 0.5
    selection.features["attn.1"][:] = False  # a place with upstream nodes but none of its own
    selection.errors["attn.1"].fill_(False)
    options = {"aggregation": aggregation, "progress": False}
    batched = edge_effects(
        model, adapter, dictionaries, [batch], selection, chunk_elements=2**12, **options
    )
    looped = edge_effects(
        model, adapter, dictionaries, [batch], selection, batched=False, **options
    )
    assert batched
    assert looped.keys() == batched.keys()
    for key, weight in batched.items():
        assert looped[key] == pytest.approx(weight, abs=1e-6, rel=1e-5), key


def test_pack_puts_nodes_active_in_different_examples_in_one_row():
    active_nB = torch.tensor([[True, False], [False, True], [True, True]])
    j, b, row, n_rows = _pack(active_nB)
    assert torch.stack([j, b, row], 1).tolist() == [
        [0, 0, 1],
        [1, 1, 1],  # shares row 1 with node 0: they meet in no example
        [2, 0, 2],
        [2, 1, 2],
    ]
    assert n_rows == 3  # row 0 carries the place's whole gradient
    assert _pack(torch.zeros(0, 2, dtype=torch.bool))[3] == 1
