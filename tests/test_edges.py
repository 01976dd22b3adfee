"""Edge weights against perturbing each upstream node with every other place frozen (every
node or a random part, summed or per position), the total gradient the edge pass rebuilds
against an ordinary backward, and the batched edge pass against its one-backward-per-node
twin."""

import copy

import pytest
import torch

from sparse_circuits.circuits.data.prompts import tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.discover import DiscoverConfig, discover_circuit
from sparse_circuits.circuits.discovery.edges import _pack, edge_effects
from sparse_circuits.circuits.discovery.nodes import METRIC_NODE, NodeSelection
from sparse_circuits.circuits.model.runner import Runner

from .conftest import ALL_ARCHS, D_MODEL, random_dictionary, tiny_model
from .reference import EXAMPLES, PLACES, capture, float64_copy, masked_nodes, run_frozen

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


class Perturbation:
    """Edge weights independently of the edge code and of splicing, in float64 on a copy of
    the model and dictionaries: the total gradient at each place (autograd through plain
    hooks, nothing frozen) times the change of every later place's features and error (and
    of the metric) when one upstream node moves a small step along its delta, every other
    place frozen at its clean value (central differences)."""

    EPS = 1e-5

    def __init__(self, model, dictionaries, batch):
        self.model, self.adapter = float64_copy(model)
        self.dictionaries = {p: copy.deepcopy(d).double() for p, d in dictionaries.items()}
        self.batch = batch
        model, adapter, dicts = self.model, self.adapter, self.dictionaries
        self.clean = {p: capture(model, adapter, batch.clean_ids, p, dicts[p]) for p in PLACES}
        self.patch = {p: capture(model, adapter, batch.patch_ids, p, dicts[p]) for p in PLACES}
        # d m / d(output) at every place: a zero added to each output, nothing frozen
        zeros = {p: torch.zeros_like(self.clean[p][1], requires_grad=True) for p in PLACES}
        replace = {p: (lambda current, z=z: current + z) for p, z in zeros.items()}
        _, metric = run_frozen(model, adapter, batch, {}, replace=replace)
        grads = torch.autograd.grad(metric.sum(), [zeros[p] for p in PLACES])
        self.grad_x = dict(zip(PLACES, grads, strict=True))
        self.grad_f = {}
        for p in PLACES:
            f_leaf = self.clean[p][0].clone().requires_grad_(True)
            (self.grad_f[p],) = torch.autograd.grad(dicts[p].decode(f_leaf), f_leaf, self.grad_x[p])

    def _moved(self, up, nodes, scale):
        """Every place's computed value and the metric, ``len(nodes)`` blocks of the batch:
        in block ``k`` node ``k`` of ``up`` moves by ``scale`` times its delta."""
        f_u, e_u = self.clean[up]
        delta_f, delta_e = self.patch[up][0] - f_u, self.patch[up][1] - e_u
        f = f_u.expand(len(nodes), *f_u.shape).clone()
        e = e_u.expand(len(nodes), *e_u.shape).clone()
        for k, (_, feature, position) in enumerate(nodes):
            at = slice(None) if position < 0 else slice(position, position + 1)
            if feature >= 0:
                f[k, :, at, feature] += scale * delta_f[:, at, feature]
            else:
                e[k, :, at] += scale * delta_e[:, at]
        n = len(nodes)
        frozen = {
            p: (self.dictionaries[p].decode(fp) + ep).repeat(n, 1, 1)
            for p, (fp, ep) in self.clean.items()
        }
        frozen[up] = self.dictionaries[up].decode(f.flatten(0, 1)) + e.flatten(0, 1)
        with torch.no_grad():
            return run_frozen(self.model, self.adapter, self.batch.tile(n), frozen)

    def edges(self, selection, aggregation):
        """``{(u, d): weight}`` for every selected node ``u`` into every selected node ``d``
        of each later place and into the metric, averaged over examples."""
        weights = {}
        for up in PLACES:
            if nodes := masked_nodes(selection, up):
                later = {p: masked_nodes(selection, p) for p in PLACES[PLACES.index(up) + 1 :]}
                weights.update(self._edges_from(nodes, later, aggregation))
        return weights

    def _edges_from(self, nodes, later, aggregation):
        """The weights from the nodes of one place into the nodes ``later[place]``."""
        (plus, m_plus), (minus, m_minus) = (
            self._moved(nodes[0][0], nodes, s * self.EPS) for s in (1.0, -1.0)
        )
        n, B = len(nodes), len(self.batch)
        per_node = lambda t: t.reshape(n, B, *t.shape[1:]) / (2 * self.EPS)  # noqa: E731
        m_w = per_node(m_plus - m_minus).sum(1) / B
        weights = {(u, METRIC_NODE): w for u, w in zip(nodes, m_w.tolist(), strict=True)}
        for down, downs in later.items():
            if not downs:
                continue
            d = self.dictionaries[down]
            f_plus, f_minus = d.encode(plus[down]), d.encode(minus[down])
            change_f = per_node(f_plus - f_minus)
            change_e = per_node(plus[down] - d.decode(f_plus) - minus[down] + d.decode(f_minus))
            w_f = (self.grad_f[down] * change_f).sum(1) / B  # (n, T, F)
            w_e = (self.grad_x[down] * change_e).sum((1, -1)) / B  # (n, T)
            w = torch.cat([w_f, w_e[..., None]], -1)  # the error as feature F
            if aggregation == "sum":
                w = w.sum(1, keepdim=True)
            positions = [max(t, 0) for _, _, t in downs]
            columns = [f if f >= 0 else D_SAE for _, f, _ in downs]
            for u, row in zip(nodes, w[:, positions, columns].tolist(), strict=True):
                weights.update({(u, dn): x for dn, x in zip(downs, row, strict=True)})
        return weights


@pytest.fixture(scope="module")
def reference(setup):
    model, _, dictionaries, batch, *_ = setup
    return Perturbation(model, dictionaries, batch)


EMPTY = [None, "resid.0", "mlp.1", "resid.2"]
"""Every node, or a random half with none at one place: at resid.0 the next place has no
earlier node (the edge pass skips it); mlp.1 and resid.2 have earlier nodes but none of their
own (they only pass their gradient back, which the edges into earlier places need)."""


def chosen_nodes(batch, aggregation, empty):
    if empty is None:
        return every_node(batch, aggregation)
    return random_nodes(batch, aggregation, 0.5, empty=(empty,))


def random_nodes(batch, aggregation, fraction, empty=(), seed=0):
    """Each node selected with probability ``fraction``, none at the ``empty`` places."""
    generator = torch.Generator().manual_seed(seed)
    selection = every_node(batch, aggregation)
    for masks in (selection.features, selection.errors):
        for place, mask in masks.items():
            masks[place] = torch.rand(mask.shape, generator=generator) < fraction
            if place in empty:
                masks[place].fill_(False)
    return selection


@pytest.mark.parametrize("empty", EMPTY)
@pytest.mark.parametrize("aggregation", ["sum", "none"])
def test_edges_match_perturbing_each_upstream_node(setup, reference, aggregation, empty):
    """Every edge between selected nodes (per position with ``none``) against the
    perturbation reference; no edge touches an unselected node."""
    model, adapter, dictionaries, batch, *_ = setup
    selection = chosen_nodes(batch, aggregation, empty)
    edges = edge_effects(
        model, adapter, dictionaries, [batch], selection, aggregation=aggregation, progress=False
    )
    expected = reference.edges(selection, aggregation)
    assert edges
    assert set(edges) <= set(expected)
    keys = list(expected)
    got = torch.tensor([edges.get(key, 0.0) for key in keys], dtype=torch.float64)
    want = torch.tensor([expected[key] for key in keys], dtype=torch.float64)
    wrong = (~torch.isclose(got, want, rtol=1e-3, atol=1e-6)).nonzero().squeeze(-1).tolist()
    assert not wrong, [(keys[i], got[i].item(), want[i].item()) for i in wrong[:10]]


@pytest.mark.parametrize("empty", EMPTY)
@pytest.mark.parametrize("batched", [True, False])
def test_rebuilt_total_gradient_equals_an_ordinary_backward(
    setup, reference, edge_passes, batched, empty
):
    """``dm/d(output)`` as the edge pass rebuilds it place by place against autograd through
    the unspliced model, at every place whose gradient the pass needs (a place after the
    first selected node, or holding one)."""
    model, adapter, dictionaries, batch, *_ = setup
    selection = chosen_nodes(batch, "sum", empty)
    edge_effects(model, adapter, dictionaries, [batch], selection, batched=batched, progress=False)
    (p,) = edge_passes
    checked = 0
    for index, place in enumerate(PLACES):
        if not any(masked_nodes(selection, q) for q in PLACES[: index + 1]):
            continue
        expected = reference.grad_x[place].float()
        torch.testing.assert_close(p.total[place], expected, rtol=1e-4, atol=1e-6)
        checked += 1
    assert checked == len(PLACES) - (empty == "resid.0")


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
    # none at attn.1: a place with upstream nodes but none of its own
    selection = random_nodes(batch, aggregation, 0.5, empty=("attn.1",))
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
    # without a row for the whole gradient, the same packing starts at row 0
    j, b, row, n_rows = _pack(active_nB, first=0)
    assert row.tolist() == [0, 0, 1, 1] and n_rows == 2
    assert _pack(torch.zeros(0, 2, dtype=torch.bool), first=0)[3] == 0


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("method", ["attrib", "ig"])
@pytest.mark.parametrize("aggregation", ["sum", "none"])
def test_edges_from_the_node_pass_cache_equal_edges_from_scratch(method, aggregation, batched):
    """The edge pass fed by the node pass's cache (its deltas; after attrib its total
    gradients, so nothing is passed back) gives the edges of an edge pass on its own, over two
    batches."""
    model, adapter = tiny_model("llama", seed=5)
    dictionaries = {
        p: random_dictionary("topk", D_MODEL, D_SAE, seed=i) for i, p in enumerate(PLACES)
    }
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    config = AttributionConfig(method=method, aggregation=aggregation, batch_size=2)
    cache = []
    node_effects(model, adapter, dictionaries, [batch], config=config, cache=cache, progress=False)
    assert len(cache) == 2 and (cache[0].totals is not None) == (method == "attrib")
    selection = random_nodes(batch, aggregation, 0.5, empty=("attn.1",))
    options = {"aggregation": aggregation, "batch_size": 2, "batched": batched, "progress": False}
    fresh = edge_effects(model, adapter, dictionaries, [batch], selection, **options)
    cached = edge_effects(model, adapter, dictionaries, [batch], selection, cache=cache, **options)
    assert fresh and cached.keys() == fresh.keys()
    for key, weight in fresh.items():
        assert cached[key] == pytest.approx(weight, abs=1e-6, rel=1e-5), key
    with pytest.raises(ValueError, match="cache holds 2 batches, the prompts make 1 batches"):
        edge_effects(
            model, adapter, dictionaries, [batch], selection, cache=cache,
            aggregation=aggregation, batch_size=4, progress=False,
        )  # fmt: skip


def test_discover_runs_each_batch_patch_pass_and_clean_backward_once(monkeypatch):
    """discover_circuit's edge pass reuses the node pass: per batch one clean run with grad
    (node effects), one patch run, one held clean run (edges), and nothing else."""
    model, adapter = tiny_model("llama", seed=5)
    dictionaries = {
        p: random_dictionary("topk", D_MODEL, D_SAE, seed=i) for i, p in enumerate(PLACES)
    }
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    calls = []
    run = Runner.run

    def counted(self, ids, batch, **options):
        kind = "patch" if torch.equal(ids, batch.patch_ids) else "clean"
        calls.append((kind, options.get("grad", False), options.get("hold_fixed", False)))
        return run(self, ids, batch, **options)

    monkeypatch.setattr(Runner, "run", counted)
    config = DiscoverConfig(AttributionConfig(batch_size=2), node_threshold=0.0)
    graph, _ = discover_circuit(model, adapter, dictionaries, [batch], config, progress=False)
    assert graph.number_of_edges() > 0
    per_batch = [("clean", True, False), ("patch", False, False)]
    assert calls == per_batch * 2 + [("clean", True, True)] * 2
