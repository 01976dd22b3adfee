"""circuit-tracer's influence, pruning and graph scores on a graph small enough to work out by
hand (the numbers in the comments)."""

import networkx as nx
import pytest

from sparse_circuits.circuits.discovery.influence import (
    cumulative_influence,
    graph_scores,
    input_nodes,
    node_influence,
    prune_by_influence,
)


def hand_graph() -> nx.DiGraph:
    """a = resid.0/1 (an input node), e0 = resid.0/err, b = resid.1/2, d = resid.1/5,
    e1 = resid.1/err; edges a->b 3, e0->b -1, a->d 0.5, b->metric 2, e1->metric 1,
    d->metric 1."""
    graph = nx.DiGraph(settings={"metric": "m"}, metric_clean=1.0, metric_patch=0.0)
    for name, layer, feature in (
        ("resid.0/1", 0, 1),
        ("resid.0/err", 0, -1),
        ("resid.1/2", 1, 2),
        ("resid.1/err", 1, -1),
        ("resid.1/5", 1, 5),
    ):
        graph.add_node(
            name, place=name.split("/")[0], kind="resid", layer=layer, feature=feature,
            is_error=feature < 0, position=-1, effect=0.1, activation=1.0, label="",
        )  # fmt: skip
    graph.add_node(
        "metric", place="metric", kind="metric", layer=2, feature=-1, is_error=False,
        position=-1, effect=1.0, activation=float("nan"), label="m",
    )  # fmt: skip
    for u, v, w in (
        ("resid.0/1", "resid.1/2", 3.0),
        ("resid.0/err", "resid.1/2", -1.0),
        ("resid.0/1", "resid.1/5", 0.5),
        ("resid.1/2", "metric", 2.0),
        ("resid.1/err", "metric", 1.0),
        ("resid.1/5", "metric", 1.0),
    ):
        graph.add_edge(u, v, weight=w)
    return graph


def test_node_influence_by_hand():
    # metric's inputs |2|, |1|, |1| -> b 0.5, e1 0.25, d 0.25; b's inputs |3|, |-1| -> a 0.75,
    # e0 0.25; d's input a 1.0. a = 0.5 * 0.75 + 0.25 * 1.0 = 0.625, e0 = 0.5 * 0.25
    influence = node_influence(hand_graph())
    assert influence == pytest.approx(
        {
            "resid.0/1": 0.625,
            "resid.0/err": 0.125,
            "resid.1/2": 0.5,
            "resid.1/err": 0.25,
            "resid.1/5": 0.25,
            "metric": 0.0,
        }
    )
    assert input_nodes(hand_graph()) == {"resid.0/1"}


def test_cumulative_influence_by_hand():
    # ranked a 0.625, b 0.5, e1 0.25, d 0.25, e0 0.125 (total 1.75); running shares
    shares = cumulative_influence(hand_graph())
    assert "metric" not in shares
    assert shares == pytest.approx(
        {
            "resid.0/1": 0.625 / 1.75,
            "resid.1/2": 1.125 / 1.75,
            "resid.1/err": 1.375 / 1.75,
            "resid.1/5": 1.625 / 1.75,
            "resid.0/err": 1.0,
        }
    )


def test_graph_scores_by_hand():
    scores = graph_scores(hand_graph())
    # replacement: a / (a + e0 + e1) = 0.625 / 1.0
    assert scores.replacement == pytest.approx(0.625)
    # completeness: non-error input shares (metric 0.75, b 0.75, the rest 1) weighted by
    # influence + the metric's weight 1: (0.75 + 0.75 * 0.5 + 0.25 + 0.625 + 0.125 + 0.25) / 2.75
    assert scores.completeness == pytest.approx(2.375 / 2.75)


def test_graph_scores_treat_error_nodes_as_sources():
    # an edge into an error node (which circuit-tracer's graphs never have) changes nothing
    graph = hand_graph()
    graph.add_edge("resid.0/1", "resid.1/err", weight=5.0)
    assert graph_scores(graph) == graph_scores(hand_graph())
    assert node_influence(graph)["resid.0/1"] > node_influence(hand_graph())["resid.0/1"]


def test_graph_scores_without_errors_are_one():
    graph = hand_graph()
    graph.remove_nodes_from(["resid.0/err", "resid.1/err"])
    scores = graph_scores(graph)
    assert scores.replacement == 1.0 and scores.completeness == pytest.approx(1.0)


def test_prune_by_influence_by_hand():
    graph = hand_graph()
    # node shares 0.357, 0.643, 0.786, 0.929, 1.0: 0.8 is reached at d (0.25): e0 goes
    kept = prune_by_influence(graph, node_share=0.8, edge_share=0.98)
    assert set(kept.nodes) == set(graph.nodes) - {"resid.0/err"}
    assert set(kept.edges) == set(graph.edges) - {("resid.0/err", "resid.1/2")}
    assert kept.graph == graph.graph
    assert kept.edges["resid.0/1", "resid.1/2"]["weight"] == 3.0
    # edge scores on that graph: m<-b 0.5, b<-a 0.5, m<-e1 0.25, m<-d 0.25, d<-a 0.25; half of
    # the total (1.75) is reached by the two of 0.5; then e1 and d lose their outgoing edges
    kept = prune_by_influence(graph, node_share=0.8, edge_share=0.5)
    assert set(kept.nodes) == {"resid.0/1", "resid.1/2", "metric"}
    assert set(kept.edges) == {("resid.0/1", "resid.1/2"), ("resid.1/2", "metric")}
    # everything at 1.0, only the strongest at 0
    assert set(prune_by_influence(graph, node_share=1.0, edge_share=1.0).nodes) == set(graph)
    smallest = prune_by_influence(graph, node_share=0.0, edge_share=1.0)
    # share 0 keeps the strongest node, a, alone; it has no edge to the metric, so it goes too
    assert set(smallest.nodes) == {"metric"} and smallest.number_of_edges() == 0


def test_prune_by_influence_checks_its_shares():
    with pytest.raises(ValueError, match="node_share must be between 0 and 1, got 1.5"):
        prune_by_influence(hand_graph(), node_share=1.5)
    with pytest.raises(ValueError, match="edge_share must be between 0 and 1, got -0.1"):
        prune_by_influence(hand_graph(), edge_share=-0.1)
