"""Circuit graphs, their files, and the faithfulness of the full and the empty circuit
(ablations against hand-made runs: test_ablation.py)."""

import pytest
import torch

from sparse_circuits.circuits.data.prompts import tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import node_effects
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.graph import (
    CircuitFileError,
    build_circuit,
    load_circuit,
    save_circuit,
    selection_from_circuit,
)
from sparse_circuits.circuits.discovery.nodes import NodeEffects, NodeSelection, select_nodes

from .conftest import D_MODEL, random_dictionary, tiny_model
from .reference import EXAMPLES, PLACES, masked_nodes


@pytest.fixture(scope="module")
def setup():
    model, adapter = tiny_model("llama", seed=7)
    dictionaries = {p: random_dictionary("topk", D_MODEL, 24, seed=i) for i, p in enumerate(PLACES)}
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    effects = node_effects(model, adapter, dictionaries, [batch], progress=False)
    return model, adapter, dictionaries, batch, effects


def selected_nodes(selection):
    """Every node a selection's masks hold, ``(place, feature, position)``."""
    return {key for place in selection.features for key in masked_nodes(selection, place)}


def test_select_by_threshold_and_top_k(setup):
    """``top_k`` keeps exactly the k largest |effects| of all nodes, features and errors of
    every place together, as ``torch.topk`` ranks them; a threshold at the k-th largest keeps
    the same nodes."""
    *_, effects = setup
    places = list(effects.features)
    nodes = [(p, f, -1) for p in places for f in range(len(effects.features[p]))]
    nodes += [(p, -1, -1) for p in places]
    magnitudes = torch.cat(
        [effects.features[p].abs() for p in places]
        + [effects.errors[p].abs()[None] for p in places]
    )
    k = 10
    largest = magnitudes.topk(k + 1)
    # no tie at the boundary, and the k-th is no zero effect: the k largest are well defined
    assert largest.values[k - 1] > largest.values[k] and largest.values[k - 1] > 1e-12
    assert any(nodes[i][1] == -1 for i in largest.indices[:k])  # errors compete
    top = select_nodes(effects, top_k=k)
    assert top.count() == 10
    assert selected_nodes(top) == {nodes[i] for i in largest.indices[:k]}
    smallest_kept = float(largest.values[k - 1])
    threshold = select_nodes(effects, threshold=smallest_kept)
    assert threshold.count() >= 10
    assert selected_nodes(threshold) == {
        nodes[i] for i in range(len(nodes)) if magnitudes[i] >= smallest_kept
    }
    assert selected_nodes(threshold) == selected_nodes(top)


def test_top_k_keeps_ties_and_never_zero_effects():
    """What ``select_nodes`` guarantees where ranks are not unique: every node as large as the
    k-th largest |effect| is kept (so ties can give more than k), and no node of zero effect."""
    effects = NodeEffects(
        features={
            "resid.0": torch.tensor([3.0, -2.0, 2.0, 0.0]),
            "resid.1": torch.tensor([0.5, -3.0]),
        },
        errors={"resid.0": torch.tensor(1.0), "resid.1": torch.tensor(0.0)},
        aggregation="sum",
        method="attrib",
        n_examples=1,
        metric_clean=0.0,
        metric_patch=0.0,
    )
    kept = {k: selected_nodes(select_nodes(effects, top_k=k)) for k in (1, 2, 3, 5, 10)}
    assert kept[1] == kept[2] == {("resid.0", 0, -1), ("resid.1", 1, -1)}  # |3| twice
    assert kept[3] == kept[2] | {("resid.0", 1, -1), ("resid.0", 2, -1)}  # |2| twice
    assert kept[5] == kept[3] | {("resid.0", -1, -1)}
    assert kept[10] == kept[5] | {("resid.1", 0, -1)}  # every non-zero node, none of the zeros


def test_circuit_json_round_trip(setup, tmp_path):
    model, adapter, dictionaries, batch, effects = setup
    selection = select_nodes(effects, top_k=15)
    edges = edge_effects(model, adapter, dictionaries, [batch], selection, progress=False)
    graph = build_circuit(
        effects, selection, edges, n_layers=adapter.n_layers, settings={"method": "attrib"}
    )
    assert graph.number_of_nodes() == 16  # 15 nodes and the metric
    assert all(graph.has_node(u) and graph.has_node(v) for u, v in graph.edges)
    save_circuit(graph, tmp_path / "c.json")
    loaded = load_circuit(tmp_path / "c.json")
    assert sorted(loaded.nodes) == sorted(graph.nodes)
    for u, v, data in graph.edges(data=True):
        assert loaded.edges[u, v]["weight"] == pytest.approx(data["weight"])
    shapes = {p: tuple(t.shape) for p, t in effects.features.items()}
    again = selection_from_circuit(loaded, shapes)
    for place in PLACES:
        assert torch.equal(again.features[place], selection.features[place])
        assert torch.equal(again.errors[place], selection.errors[place])


def test_bad_circuit_files(tmp_path):
    with pytest.raises(CircuitFileError, match="not found"):
        load_circuit(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(CircuitFileError, match="not a sparse-circuits circuit"):
        load_circuit(tmp_path / "x.json")


def test_missing_output_folder_is_an_error(setup, tmp_path):
    *_, effects = setup
    graph = build_circuit(effects, select_nodes(effects, top_k=3), {}, n_layers=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_circuit(graph, tmp_path / "missing" / "c.json")


def test_full_and_empty_circuits(setup):
    model, adapter, dictionaries, batch, effects = setup
    everything = NodeSelection(
        {p: torch.ones(24, dtype=torch.bool) for p in PLACES},
        {p: torch.tensor(True) for p in PLACES},
    )
    nothing = NodeSelection(
        {p: torch.zeros(24, dtype=torch.bool) for p in PLACES},
        {p: torch.tensor(False) for p in PLACES},
    )
    full, empty = score_selection(
        model, adapter, dictionaries, [batch], [everything, nothing], progress=False
    )
    assert full.faithfulness == pytest.approx(1.0, abs=1e-5)
    assert full.completeness == pytest.approx(0.0, abs=1e-5)
    assert empty.faithfulness == pytest.approx(0.0, abs=1e-5)
    assert empty.completeness == pytest.approx(1.0, abs=1e-5)
