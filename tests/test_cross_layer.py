"""A cross-layer transcoder (circuit-tracer's layout, weights made here) spliced into a tiny
Llama beside an ordinary SAE: the spliced model is the model; node effects against patching
the features' writes by plain hooks (exact) and its derivative (attrib); edges against moving
each node with every other spliced place frozen, in float64 (central differences)."""

import copy
import warnings

import pytest
import torch

from sparse_circuits.circuits.data.prompts import tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.discover import DiscoverConfig, discover_circuit
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.graph import load_circuit, save_circuit
from sparse_circuits.circuits.discovery.nodes import METRIC_NODE, NodeSelection
from sparse_circuits.circuits.export import export
from sparse_circuits.circuits.model.splice import check_dictionaries, splice
from sparse_circuits.dictionaries import DictionaryConfig, DictionaryError
from sparse_circuits.dictionaries.convert import FormatCannotHold, convert
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.editing.interventions import FeatureAblation
from sparse_circuits.errors import CircuitWarning

from .conftest import D_MODEL, N_LAYERS, random_dictionary, tiny_model
from .reference import (
    EXAMPLES,
    cross_layer_forward,
    cross_layer_tensors,
    float64_copy,
    hooked_run,
    logit_diff,
    write_cross_layer,
)

D_SAE = 12
CLT = [f"mlp.{n}" for n in range(N_LAYERS)]
PLACES = ["mlp.0", "attn.1", "mlp.1", "mlp.2"]
"""The spliced places in forward order: the CLT's layers and an SAE at attn.1."""
INPUTS = [f"mlp_in.{n}" for n in range(N_LAYERS)]
EPS = 1e-5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, adapter = tiny_model("llama", seed=7)
    files = cross_layer_tensors(N_LAYERS, D_MODEL, D_SAE, threshold=True, seed=1)
    folder = write_cross_layer(tmp_path_factory.mktemp("clt") / "clt", files)
    dictionaries = load_dictionary_set(folder)
    dictionaries["attn.1"] = random_dictionary("relu", D_MODEL, D_SAE, seed=3)
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    return model, adapter, files, dictionaries, batch


@pytest.mark.parametrize("hold_fixed", [False, True])
def test_spliced_logits_equal_plain_logits(setup, hold_fixed):
    """The CLT's features are circuit-tracer's on the MLP inputs, each mlp.M's error is the
    MLP's output minus the CLT's reconstruction, and the logits do not move."""
    model, adapter, files, dictionaries, _ = setup
    ids = torch.randint(3, 20, (2, 7))
    check_dictionaries(adapter, dictionaries)
    with torch.no_grad():
        computed, plain = hooked_run(model, adapter, ids, read=INPUTS + CLT)
        with model.trace(ids):
            spliced = splice(adapter, dictionaries, hold_fixed=hold_fixed)
            logits = model.output.logits.save()
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    f_LBTF, x_hat_LBTD = cross_layer_forward(files, torch.stack([computed[p] for p in INPUTS]))
    assert (f_LBTF != 0).any() and (f_LBTF == 0).any()
    # float32 sums in another order (F.linear against x @ W_enc) of terms up to ~5
    for n, place in enumerate(CLT):
        torch.testing.assert_close(spliced[place].features, f_LBTF[n], atol=1e-4, rtol=1e-4)
        expected_error = computed[place] - x_hat_LBTD[n]
        torch.testing.assert_close(spliced[place].error, expected_error, atol=1e-4, rtol=1e-4)


def test_every_later_layer_must_be_spliced(setup):
    model, adapter, _, dictionaries, _ = setup
    with pytest.raises(DictionaryError, match=r"mlp\.0 .*also writes mlp\.1, which has no"):
        check_dictionaries(
            adapter, {"mlp.0": dictionaries["mlp.0"], "mlp.2": dictionaries["mlp.2"]}
        )
    check_dictionaries(adapter, {p: dictionaries[p] for p in ("mlp.1", "mlp.2")})
    with pytest.raises(DictionaryError, match="one layer of a cross-layer transcoder"):
        FeatureAblation("mlp.1", dictionaries["mlp.1"], [0])


def test_one_layer_alone_is_refused_where_one_place_is_written(setup, tmp_path):
    *_, dictionaries, _ = setup
    with pytest.raises(FormatCannotHold, match="a layer of a cross-layer transcoder"):
        convert(dictionaries["mlp.0"], "saelens", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DictionaryError, match="writes_later needs a transcoder"):
        DictionaryConfig(arch="relu", d_in=4, d_sae=8, place="resid.0", writes_later=["mlp.1"])


class Reference:
    """The CLT and the SAE by hand from their weights on a float64 copy of the model, run by
    plain hooks: each node's clean and patch values, what it writes into each place, and the
    total gradient ``dm/d(output)`` at every spliced place (nothing frozen)."""

    def __init__(self, model, files, dictionaries, batch):
        self.model, self.adapter = float64_copy(model)
        self.files = {
            name: {k: t.double() for k, t in tensors.items()} for name, tensors in files.items()
        }
        self.sae = copy.deepcopy(dictionaries["attn.1"]).double()
        self.batch = batch
        self.computed = self._run(batch.clean_ids)[0]
        self.clean = self.nodes(self.computed)
        self.patch = self.nodes(self._run(batch.patch_ids)[0])
        zeros = {p: torch.zeros_like(self.clean[p][1], requires_grad=True) for p in PLACES}
        _, metric = self._run(
            batch.clean_ids, {p: (lambda c, z=z: c + z) for p, z in zeros.items()}
        )
        grads = torch.autograd.grad(metric.sum(), list(zeros.values()))
        self.grad_x = dict(zip(PLACES, grads, strict=True))
        self.grad_f = {  # dm/df: the output gradients through every decoder of the features
            p: sum(self.grad_x[q] @ W.T for q, W in self.decoders(p).items()) for p in PLACES
        }

    def _run(self, ids, replace=None, n=1):
        computed, logits = hooked_run(
            self.model, self.adapter, ids, read=INPUTS + PLACES, replace=replace
        )
        return computed, logit_diff(logits, self.batch.tile(n))

    def decoders(self, place):
        """``{written place: (F, D) decoder}`` of the features at ``place``."""
        if place == "attn.1":
            return {place: self.sae.W_dec.detach()}
        n = CLT.index(place)
        W_dec_FLD = self.files[f"W_dec_{n}.safetensors"][f"W_dec_{n}"]
        return {CLT[m]: W_dec_FLD[:, m - n] for m in range(n, N_LAYERS)}

    def nodes(self, computed):
        """``{place: (features, error)}`` from what a run computed: the CLT's features of the
        MLP inputs, each mlp.M's error against the CLT's reconstruction; the SAE's own."""
        f_L, x_hat_L = cross_layer_forward(self.files, torch.stack([computed[p] for p in INPUTS]))
        values = {p: (f_L[n], computed[p] - x_hat_L[n]) for n, p in enumerate(CLT)}
        f_attn = self.sae.encode(computed["attn.1"])
        values["attn.1"] = (f_attn, computed["attn.1"] - self.sae.decode(f_attn))
        return values

    def writes(self, place, scale):
        """``[(node, {place: (B, T, D) change of its output})]`` for every node of ``place``
        moved by ``scale`` times its delta (features through each decoder, the error into
        ``place`` alone)."""
        delta_f = self.patch[place][0] - self.clean[place][0]
        moved = [
            (
                (place, i),
                {q: scale * delta_f[..., i, None] * W[i] for q, W in self.decoders(place).items()},
            )
            for i in range(D_SAE)
        ]
        delta_e = self.patch[place][1] - self.clean[place][1]
        return [*moved, ((place, -1), {place: scale * delta_e})]

    def shifted(self, moves, *, frozen):
        """The runs with each move's changes added (rows block by block): to what each place
        computes, or, ``frozen``, to its clean value (what a spliced place writes). Returns
        what was computed and the metric ``(n, B)``."""
        n = len(moves)
        replace = {}
        for place in PLACES:
            zero = torch.zeros_like(self.computed[place])
            shift = torch.stack([move.get(place, zero) for move in moves]).flatten(0, 1)
            if frozen:
                value = self.computed[place].repeat(n, 1, 1) + shift
                replace[place] = lambda _, value=value: value
            else:
                replace[place] = lambda current, shift=shift: current + shift
        with torch.no_grad():
            computed, metric = self._run(self.batch.clean_ids.repeat(n, 1), replace, n)
        return computed, metric.view(n, -1)

    def node_effects(self):
        """``{node: (exact effect, derivative)}``: the metric's change when the node's writes
        move by its whole delta, the model computing everything else, and its derivative along
        that move (central differences), each averaged over examples."""
        base = self._run(self.batch.clean_ids)[1]
        effects = {}
        for place in PLACES:
            nodes = [node for node, _ in self.writes(place, 1.0)]
            _, whole = self.shifted([w for _, w in self.writes(place, 1.0)], frozen=False)
            _, plus = self.shifted([w for _, w in self.writes(place, EPS)], frozen=False)
            _, minus = self.shifted([w for _, w in self.writes(place, -EPS)], frozen=False)
            exact = (whole - base).mean(1)
            derivative = ((plus - minus) / (2 * EPS)).mean(1)
            pairs = zip(exact.tolist(), derivative.tolist(), strict=True)
            effects.update(zip(nodes, pairs, strict=True))
        return effects

    def edges(self):
        """``{(u, d): weight}`` for every node u into every node d of each later place and
        into the metric: u moved with every spliced place frozen, d's change read from what
        the run computes, times d's total gradient, averaged over examples."""
        B = len(self.batch)
        weights = {}
        for index, up in enumerate(PLACES):
            nodes = [(up, f, -1) for (_, f), _ in self.writes(up, 1.0)]
            (plus, m_plus), (minus, m_minus) = (
                self.shifted([w for _, w in self.writes(up, sign * EPS)], frozen=True)
                for sign in (1.0, -1.0)
            )
            m_w = ((m_plus - m_minus) / (2 * EPS)).mean(1)
            weights.update({(u, METRIC_NODE): w for u, w in zip(nodes, m_w.tolist(), strict=True)})
            values_plus, values_minus = self.nodes(plus), self.nodes(minus)
            for down in PLACES[index + 1 :]:
                n = len(nodes)
                change_f, change_e = (
                    (a - b).view(n, B, *a.shape[1:]) / (2 * EPS)
                    for a, b in zip(values_plus[down], values_minus[down], strict=True)
                )
                w_f = (self.grad_f[down] * change_f).sum((1, 2)) / B  # (n, F)
                w_e = (self.grad_x[down] * change_e).sum((1, 2, 3)) / B  # (n,)
                for u, row_f, w in zip(nodes, w_f.tolist(), w_e.tolist(), strict=True):
                    weights.update({(u, (down, f, -1)): x for f, x in enumerate(row_f)})
                    weights[(u, (down, -1, -1))] = w
        return weights


@pytest.fixture(scope="module")
def reference(setup):
    model, _, files, dictionaries, batch = setup
    return Reference(model, files, dictionaries, batch)


def close(got: dict, want: dict, *, rtol: float, atol: float) -> list:
    """The keys of ``want`` where ``got`` (0 where missing) is not close, with both values."""
    keys = list(want)
    g = torch.tensor([got.get(key, 0.0) for key in keys], dtype=torch.float64)
    w = torch.tensor([want[key] for key in keys], dtype=torch.float64)
    wrong = (~torch.isclose(g, w, rtol=rtol, atol=atol)).nonzero().squeeze(-1).tolist()
    return [(keys[i], g[i].item(), w[i].item()) for i in wrong[:10]]


def as_nodes(effects):
    """``{(place, feature or -1): effect}`` from ``NodeEffects`` summed over positions."""
    nodes = {(p, i): float(v) for p, t in effects.features.items() for i, v in enumerate(t)}
    return nodes | {(p, -1): float(t) for p, t in effects.errors.items()}


@pytest.mark.parametrize("method", ["exact", "attrib"])
def test_node_effects_match_patching_the_writes(setup, reference, method):
    """``exact`` equals patching each node's writes (a CLT feature's into every layer from its
    own on); ``attrib`` equals the derivative of that patch."""
    model, adapter, _, dictionaries, batch = setup
    config = AttributionConfig(method=method)
    effects = node_effects(model, adapter, dictionaries, [batch], config=config, progress=False)
    column = 0 if method == "exact" else 1
    expected = {node: both[column] for node, both in reference.node_effects().items()}
    assert any(abs(v) > 1e-3 for (p, f), v in expected.items() if p == "mlp.0" and f >= 0)
    assert not close(as_nodes(effects), expected, rtol=1e-4, atol=1e-6)


def test_ig_with_one_step_is_attrib(setup):
    """ig with one step is the gradient at the clean point: attrib, on the CLT as anywhere."""
    model, adapter, _, dictionaries, batch = setup
    ig = node_effects(model, adapter, dictionaries, [batch],
                      config=AttributionConfig(method="ig", steps=1), progress=False)  # fmt: skip
    attrib = node_effects(model, adapter, dictionaries, [batch], progress=False)
    assert not close(as_nodes(ig), as_nodes(attrib), rtol=1e-4, atol=1e-6)


def every_node():
    return NodeSelection(
        features={p: torch.ones(D_SAE, dtype=torch.bool) for p in PLACES},
        errors={p: torch.tensor(True) for p in PLACES},
    )


def test_edges_match_moving_each_node(setup, reference):
    model, adapter, _, dictionaries, batch = setup
    edges = edge_effects(model, adapter, dictionaries, [batch], every_node(), progress=False)
    expected = reference.edges()
    assert edges and set(edges) <= set(expected)
    # a CLT feature of layer 0 reaches mlp.2's nodes along its own write into mlp.1
    assert any(u[0] == "mlp.0" and u[1] >= 0 and d[0] == "mlp.2" for u, d in edges)
    assert not close(edges, expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("aggregation", ["sum", "none"])
def test_batched_edges_equal_one_backward_per_node(setup, aggregation):
    model, adapter, _, dictionaries, batch = setup
    shape = () if aggregation == "sum" else (batch.length,)
    generator = torch.Generator().manual_seed(0)
    selection = NodeSelection(
        features={p: torch.rand(*shape, D_SAE, generator=generator) < 0.5 for p in PLACES},
        errors={p: torch.rand(shape, generator=generator) < 0.5 for p in PLACES},
    )
    options = {"aggregation": aggregation, "progress": False}
    batched = edge_effects(model, adapter, dictionaries, [batch], selection, **options)
    looped = edge_effects(
        model, adapter, dictionaries, [batch], selection, batched=False, **options
    )
    assert batched and looped.keys() == batched.keys()
    # the same float32 sums in another order: each weight within 8 float32 roundings of the
    # largest (about 43; seen with MKL on an AMD CPU: 5e-6 on a weight of 0.2)
    largest = max(abs(weight) for weight in batched.values())
    for key, weight in batched.items():
        assert looped[key] == pytest.approx(weight, abs=1e-6 * largest, rel=1e-5), key


def test_edge_pass_rebuilds_the_total_gradient(setup, reference, edge_passes):
    """``dm/d(output)`` at every place as the edge pass rebuilds it through the CLT's layers
    (and attn.1 and mlp.1 adding into one residual stream) against autograd without splicing."""
    model, adapter, _, dictionaries, batch = setup
    edge_effects(model, adapter, dictionaries, [batch], every_node(), progress=False)
    for place in PLACES:  # float32 sums against float64, of gradients up to ~5
        expected = reference.grad_x[place].float()
        torch.testing.assert_close(edge_passes[0].total[place], expected, rtol=1e-4, atol=1e-5)


def test_zero_ablating_every_node_leaves_the_decoder_biases(setup):
    """Faithfulness's empty circuit, zero ablation: each mlp.M keeps only b_dec_M (the CLT's
    layers write no bias into later places), attn.1 its SAE's b_dec; and the full circuit is
    the model."""
    model, adapter, files, dictionaries, batch = setup
    every, none = every_node(), every_node()
    for masks in (none.features, none.errors):
        for mask in masks.values():
            mask.fill_(False)
    full, empty = score_selection(
        model, adapter, dictionaries, [batch], [every, none], ablation="zero", progress=False
    )
    biases = {p: files[f"W_enc_{n}.safetensors"][f"b_dec_{n}"] for n, p in enumerate(CLT)}
    biases["attn.1"] = dictionaries["attn.1"].b_dec.detach()
    replace = {p: (lambda current, b=b: b.expand_as(current)) for p, b in biases.items()}
    with torch.no_grad():
        _, logits = hooked_run(model, adapter, batch.clean_ids, replace=replace)
    assert empty.m_circuit == pytest.approx(float(logit_diff(logits, batch).mean()), abs=1e-5)
    assert full.faithfulness == pytest.approx(1.0, abs=1e-5)


def test_a_circuit_through_the_clt_saves_and_exports(setup, tmp_path):
    """discover end to end: CLT feature nodes under their layer, one error node per written
    place, edges between layers, the circuit file and the exports."""
    model, adapter, _, dictionaries, batch = setup
    config = DiscoverConfig(AttributionConfig(), node_threshold=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CircuitWarning)  # random dictionaries miss a lot
        graph, _ = discover_circuit(model, adapter, dictionaries, [batch], config, progress=False)
    back = load_circuit(save_circuit(graph, tmp_path / "circuit.json"))
    nodes = dict(back.nodes(data=True))
    assert {"mlp.0/err", "mlp.1/err", "mlp.2/err"} <= set(nodes)
    assert any(d["place"] == "mlp.0" and not d["is_error"] for d in nodes.values())
    assert all(d["layer"] == int(d["place"][-1]) for d in nodes.values() if d["kind"] == "mlp")
    assert any(u.startswith("mlp.0/") and v.startswith("mlp.2/") for u, v in back.edges)
    for fmt in ("graphml", "neuronpedia"):
        assert export(back, tmp_path / f"circuit.{fmt}", fmt).stat().st_size > 0
