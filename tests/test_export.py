"""Circuit exports (GraphML, Neuronpedia JSON, HTML, PNG) and feature labels from a corpus."""

import html
import json
import math
import random
import time

import networkx as nx
import pytest
import torch

from sparse_circuits.circuits.data.corpus import tokenize_contexts
from sparse_circuits.circuits.data.prompts import tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.graph import (
    build_circuit,
    load_circuit,
    save_circuit,
)
from sparse_circuits.circuits.discovery.influence import cumulative_influence
from sparse_circuits.circuits.discovery.labels import (
    feature_nodes,
    label_circuit,
    marked_window,
    top_activating_contexts,
)
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.export import (
    CHROMIUM,
    FORMATS,
    RenderError,
    export,
    render_png,
    to_graphml,
    to_html,
    to_neuronpedia,
)
from sparse_circuits.circuits.model.places import KINDS, parse_place

from .conftest import D_MODEL, WORDS, random_dictionary, tiny_model
from .reference import EXAMPLES, PLACES, hooked_run

SETTINGS = {
    "model": "tiny-llama",
    "method": "attrib",
    "thresholds": {"node_top_k": 15, "edge": 0.0},
    "dictionaries": {p: f"dicts/{p}" for p in PLACES},
    "prompts": ["the keys to the cabinet", "the dogs near the man"],
    "steps": None,
    "metric": "logit_diff",
}


@pytest.fixture(scope="module")
def setup():
    model, adapter = tiny_model("llama", seed=7)
    dictionaries = {p: random_dictionary("topk", D_MODEL, 24, seed=i) for i, p in enumerate(PLACES)}
    batch = tokenize_prompts(model.tokenizer, EXAMPLES, same_length=True)[0]
    return model, adapter, dictionaries, batch


def make_circuit(setup, aggregation, top_k):
    model, adapter, dictionaries, batch = setup
    config = AttributionConfig(aggregation=aggregation)
    effects = node_effects(model, adapter, dictionaries, [batch], config=config, progress=False)
    selection = select_nodes(effects, top_k=top_k)
    edges = edge_effects(
        model, adapter, dictionaries, [batch], selection, aggregation=aggregation, progress=False
    )
    settings = dict(SETTINGS, aggregation=aggregation)
    return build_circuit(effects, selection, edges, n_layers=adapter.n_layers, settings=settings)


@pytest.fixture(scope="module")
def circuit(setup):
    graph = make_circuit(setup, "sum", 15)
    assert graph.number_of_edges() > 0
    assert any(d["is_error"] for _, d in graph.nodes(data=True))
    return graph


@pytest.fixture(scope="module")
def positional_circuit(setup):
    graph = make_circuit(setup, "none", 20)
    assert any(d["position"] >= 0 for _, d in graph.nodes(data=True))
    return graph


@pytest.fixture(scope="module")
def contexts(setup):
    model = setup[0]
    rng = random.Random(0)
    documents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(40)]
    contexts_NT = tokenize_contexts(model.tokenizer, documents, context_length=9)
    assert len(contexts_NT) >= 20
    return contexts_NT


@pytest.fixture(scope="module")
def labelled(setup, circuit, contexts):
    model, adapter, dictionaries, _ = setup
    labels = top_activating_contexts(
        model,
        adapter,
        dictionaries,
        feature_nodes(circuit),
        contexts,
        k=4,
        window=5,
        batch_size=7,
        progress=False,
    )
    graph = label_circuit(circuit.copy(), labels)
    return graph, labels


# --------------------------------------------------------------------------- GraphML


def test_graphml_round_trip(labelled, tmp_path):
    graph, _ = labelled
    to_graphml(graph, tmp_path / "c.graphml")
    text = (tmp_path / "c.graphml").read_text()
    assert "True" not in text and "False" not in text  # XML Schema booleans: true/false
    assert ">nan<" not in text.lower()
    back = nx.read_graphml(tmp_path / "c.graphml")
    assert back.is_directed()
    assert set(back.nodes) == set(graph.nodes)
    assert set(back.edges) == set(graph.edges)
    for u, v, data in graph.edges(data=True):
        assert back.edges[u, v]["weight"] == data["weight"]
    for name, data in graph.nodes(data=True):
        read = back.nodes[name]
        assert read["effect"] == data["effect"]
        for attribute in ("place", "kind", "layer", "feature", "is_error", "position"):
            assert read[attribute] == data[attribute], (name, attribute)
        assert read.get("label", "") == data["label"]
        if math.isnan(data["activation"]):
            assert "activation" not in read  # NaN is left out, never written as text
        else:
            assert read["activation"] == data["activation"]
        if data.get("top_contexts"):
            assert json.loads(read["top_contexts"]) == data["top_contexts"]
    assert back.graph["settings.model"] == "tiny-llama"
    assert back.graph["settings.thresholds.node_top_k"] == "15"
    assert json.loads(back.graph["settings.prompts"]) == SETTINGS["prompts"]
    assert "settings.steps" not in back.graph  # None is left out
    assert back.graph["metric_clean"] == graph.graph["metric_clean"]


def test_graphml_positional_nodes_and_odd_text(positional_circuit, tmp_path):
    graph = positional_circuit.copy()
    name = next(n for n, d in graph.nodes(data=True) if not d["is_error"] and n != "metric")
    graph.nodes[name]["label"] = "a <b> & \x0b c"
    graph.nodes[name]["tags"] = ["x", 2]
    graph.nodes["metric"]["tags"] = "plain"
    to_graphml(graph, tmp_path / "p.graphml")
    back = nx.read_graphml(tmp_path / "p.graphml")
    assert set(back.nodes) == set(graph.nodes)
    assert any("@" in n for n in back.nodes)
    assert back.nodes[name]["label"] == "a <b> & \ufffd c"  # XML cannot hold \x0b
    assert json.loads(back.nodes[name]["tags"]) == ["x", 2]
    for u, v, data in graph.edges(data=True):
        assert back.edges[u, v]["weight"] == data["weight"]


def test_graphml_reads_in_igraph(labelled, tmp_path):
    igraph = pytest.importorskip("igraph")
    graph, _ = labelled
    to_graphml(graph, tmp_path / "c.graphml")
    back = igraph.Graph.Read_GraphML(str(tmp_path / "c.graphml"))
    assert back.is_directed()
    assert (back.vcount(), back.ecount()) == (graph.number_of_nodes(), graph.number_of_edges())
    for vertex in back.vs:
        data = graph.nodes[vertex["id"]]
        assert vertex["effect"] == data["effect"]
        if data.get("top_contexts"):
            assert json.loads(vertex["top_contexts"]) == data["top_contexts"]


# --------------------------------------------------------------------------- Neuronpedia


# The graph JSON's schema, written from circuit-tracer's format (its frontend's graph_models:
# Metadata, QParams, Node, Link, Model): field -> allowed types; every field is required.
NEURONPEDIA_SCHEMA = {
    "metadata": {
        "slug": str,
        "scan": str,
        "transcoder_list": list,
        "prompt_tokens": list,
        "prompt": str,
        "node_threshold": (float, int, type(None)),
        "schema_version": (int, type(None)),
    },
    "qParams": {
        "pinnedIds": list,
        "supernodes": list,
        "linkType": str,
        "clickedId": str,
        "sg_pos": str,
    },
    "node": {
        "node_id": str,
        "feature": int,
        "layer": str,
        "ctx_idx": int,
        "feature_type": str,
        "token_prob": float,
        "is_target_logit": bool,
        "run_idx": int,
        "reverse_ctx_idx": int,
        "jsNodeId": str,
        "clerp": str,
        "influence": (float, type(None)),
        "activation": (float, type(None)),
    },
    "link": {"source": str, "target": str, "weight": float},
}


def schema_errors(document):
    """Where ``document`` breaks ``NEURONPEDIA_SCHEMA`` (empty when it does not)."""
    errors = []

    def check(value, fields, where):
        for name, types in fields.items():
            if name not in value:
                errors.append(f"{where}: no {name}")
            elif isinstance(value[name], bool) and types is not bool:
                errors.append(f"{where}.{name}: a bool")
            elif not isinstance(value[name], types):
                errors.append(f"{where}.{name}: {type(value[name]).__name__}")

    check(document["metadata"], NEURONPEDIA_SCHEMA["metadata"], "metadata")
    check(document["qParams"], NEURONPEDIA_SCHEMA["qParams"], "qParams")
    for i, node in enumerate(document["nodes"]):
        check(node, NEURONPEDIA_SCHEMA["node"], f"nodes[{i}]")
    for i, link in enumerate(document["links"]):
        check(link, NEURONPEDIA_SCHEMA["link"], f"links[{i}]")
    if not all(isinstance(t, str) for t in document["metadata"]["prompt_tokens"]):
        errors.append("metadata.prompt_tokens: not all strings")
    return errors


def frontend_survivors(document):
    """The node and link ids circuit-tracer's frontend keeps (``util-cg.js``, ``formatData``,
    replayed): nodes with influence at most the pruning threshold (``node_threshold``, else
    0.4) or of type embedding/logit; then every group of nodes sharing
    ``layer_feature_ctx`` (errors also their distance from the end) larger than 2/3 of the
    prompt tokens is deleted; links need both ends."""
    meta = document["metadata"]
    threshold = meta.get("node_threshold") or 0.4
    nodes = [
        n
        for n in document["nodes"]
        if n["feature_type"] in ("embedding", "logit")
        or (n["influence"] is not None and n["influence"] <= threshold)
    ]
    n_tokens = len(meta["prompt_tokens"])
    groups = {}
    for n in nodes:
        key = f"{n['layer']}_{n['feature']}_{n['ctx_idx']}"
        if "error" in n["feature_type"]:
            key += f"__err_idx_{n_tokens - n['ctx_idx']}"
        groups.setdefault(key, []).append(n["node_id"])
    kept = {i for group in groups.values() if len(group) <= n_tokens * 2 / 3 for i in group}
    links = [(k["source"], k["target"]) for k in document["links"]]
    return kept, [link for link in links if link[0] in kept and link[1] in kept]


def check_viewer_file(document, graph):
    """What every exported graph JSON must be: schema-valid, every node and link surviving
    the frontend, circuit-tracer's layers (0..n_layers + 1, E for embed), unlinked nodes
    gone but the metric, a prompt."""
    assert schema_errors(document) == []
    kept, links = frontend_survivors(document)
    assert kept == {n["node_id"] for n in document["nodes"]}
    assert len(links) == len(document["links"])
    n_layers = graph.nodes["metric"]["layer"]
    linked = {n for edge in graph.edges for n in edge} | {"metric"}
    assert {n["circuit_node"] for n in document["nodes"]} == linked
    for node in document["nodes"]:
        data = graph.nodes[node["circuit_node"]]
        if data["place"] == "embed":
            assert node["layer"] == "E"
        elif data["place"] == "metric":
            assert node["layer"] == str(n_layers + 1)
        else:
            assert node["layer"] == str(data["layer"])
    assert document["metadata"]["prompt"]
    return kept


def add_unlinked_feature(graph, *, effect):
    """Add ``resid.2/23``, a feature node without any edge."""
    graph.add_node(
        "resid.2/23", place="resid.2", kind="resid", layer=2, feature=23, is_error=False,
        position=-1, effect=effect, activation=1.0, label="",
    )  # fmt: skip


def uncantor(value):
    w = math.floor((math.sqrt(8 * value + 1) - 1) / 2)
    index = value - w * (w + 1) // 2
    return w - index, index


def test_neuronpedia_json(labelled, tmp_path):
    graph, _ = labelled
    to_neuronpedia(graph, tmp_path / "my-circuit.json")
    document = json.loads((tmp_path / "my-circuit.json").read_text())
    assert {"metadata", "qParams", "nodes", "links"} <= set(document)
    meta = document["metadata"]
    assert meta["slug"] == "my-circuit" and meta["scan"] == "tiny-llama"
    assert meta["schema_version"] == 1 and isinstance(meta["prompt_tokens"], list)
    assert {"prompt", "node_threshold", "transcoder_list"} <= set(meta)
    assert set(document["qParams"]) == {
        "pinnedIds",
        "supernodes",
        "linkType",
        "clickedId",
        "sg_pos",
    }
    check_viewer_file(document, graph)
    nodes = document["nodes"]
    ids = [n["node_id"] for n in nodes]
    assert len(set(ids)) == len(ids)
    required = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"}
    cumulative = cumulative_influence(graph)
    for node in nodes:
        assert required <= set(node)
        int(node["layer"])  # the viewer needs numeric layers
        data = graph.nodes[node["circuit_node"]]
        if node["circuit_node"] == "metric":
            assert node["feature_type"] == "logit" and node["is_target_logit"]
            assert "(p=" in node["clerp"]
            assert "probe_location_idx" not in node
        else:
            assert node["probe_location_idx"] == KINDS.index(data["kind"])
            assert node["node_id"].endswith("" if data["kind"] == "mlp" else f"_{data['kind']}")
        if node["circuit_node"] == "metric":
            pass
        elif data["is_error"]:
            assert node["feature_type"] == f"{data['kind']} reconstruction error"
            assert node["feature"] == -1 - parse_place(data["place"], 3).order
        else:
            assert node["feature_type"] == "cross layer transcoder"
            stream = parse_place(data["place"], 3).order
            assert uncantor(node["feature"]) == (stream, data["feature"])
            assert node["activation"] == pytest.approx(data["activation"])
            assert node["clerp"] == data["label"]
        if node["circuit_node"] != "metric":
            assert 0 < node["influence"] <= 1
            assert node["influence"] == cumulative[node["circuit_node"]]
    metric_layer = int(next(n for n in nodes if n["feature_type"] == "logit")["layer"])
    assert metric_layer == graph.nodes["metric"]["layer"] + 1
    assert all(int(n["layer"]) < metric_layer for n in nodes if n["feature_type"] != "logit")
    # forward order of places is kept: by layer, then by location in the block
    order = {
        graph.nodes[n["circuit_node"]]["place"]: (int(n["layer"]), n["probe_location_idx"])
        for n in nodes
        if n["feature_type"] != "logit"
    }
    ordered = [p for p in PLACES if p in order]
    assert [order[p] for p in ordered] == sorted(order[p] for p in ordered)
    by_id = {n["node_id"]: n["circuit_node"] for n in nodes}
    assert len(document["links"]) == graph.number_of_edges()
    for link in document["links"]:
        assert link["source"] in by_id and link["target"] in by_id
        u, v = by_id[link["source"]], by_id[link["target"]]
        assert link["weight"] == graph.edges[u, v]["weight"]


def test_neuronpedia_summed_circuit_shows_every_node(circuit, tmp_path):
    graph = circuit.copy()
    graph.graph["settings"] = dict(graph.graph["settings"], prompt="the keys", prompt_length=6)
    add_unlinked_feature(graph, effect=0.5)  # no edge: left out
    to_neuronpedia(graph, tmp_path / "s.json")
    document = json.loads((tmp_path / "s.json").read_text())
    # one placeholder per position of the longest prompt; summed nodes at the last one
    assert document["metadata"]["prompt_tokens"] == [f"[{t}]" for t in range(6)]
    assert {n["ctx_idx"] for n in document["nodes"]} == {5}
    assert document["metadata"]["prompt"] == "the keys"
    assert "resid.2/23" not in {n["circuit_node"] for n in document["nodes"]}
    kept = check_viewer_file(document, graph)
    assert len(kept) == len(document["nodes"]) > 5
    # a one-column file, as this writer made before, loses every node to the frontend
    one_column = dict(document, metadata=dict(document["metadata"], prompt_tokens=["[all]"]))
    assert frontend_survivors(one_column)[0] == set()
    # without a recorded prompt or length: the prompt file's name and at least two columns
    graph.graph["settings"] = dict(SETTINGS, prompts="data/agreement.jsonl")
    to_neuronpedia(graph, tmp_path / "t.json")
    document = json.loads((tmp_path / "t.json").read_text())
    assert document["metadata"]["prompt"] == "prompts of agreement.jsonl"
    assert len(document["metadata"]["prompt_tokens"]) == 2
    check_viewer_file(document, graph)


def test_neuronpedia_embed_nodes_sit_on_the_embedding_row(tmp_path):
    graph = nx.DiGraph(settings={"metric": "m", "prompt": "p"}, metric_clean=1.0)
    for name, place, kind, layer in (
        ("embed/3", "embed", "embed", -1),
        ("resid.0/3", "resid.0", "resid", 0),
    ):
        graph.add_node(
            name, place=place, kind=kind, layer=layer, feature=3, is_error=False,
            position=-1, effect=0.5, activation=1.0, label="",
        )  # fmt: skip
    graph.add_node(
        "metric", place="metric", kind="metric", layer=1, feature=-1, is_error=False,
        position=-1, effect=1.0, activation=float("nan"), label="m",
    )  # fmt: skip
    graph.add_edge("embed/3", "resid.0/3", weight=0.5)
    graph.add_edge("resid.0/3", "metric", weight=0.5)
    to_neuronpedia(graph, tmp_path / "e.json")
    document = json.loads((tmp_path / "e.json").read_text())
    layers = {n["circuit_node"]: n["layer"] for n in document["nodes"]}
    assert layers == {"embed/3": "E", "resid.0/3": "0", "metric": "2"}
    check_viewer_file(document, graph)


def test_neuronpedia_loads_in_circuit_tracers_classes(labelled, positional_circuit, tmp_path):
    graph_models = pytest.importorskip("circuit_tracer.frontend.graph_models")
    for name, graph in (("sum", labelled[0]), ("none", positional_circuit)):
        to_neuronpedia(graph, tmp_path / f"{name}.json")
        model = graph_models.Model.model_validate_json((tmp_path / f"{name}.json").read_text())
        assert len(model.nodes) == len(json.loads((tmp_path / f"{name}.json").read_text())["nodes"])


def test_neuronpedia_positions(positional_circuit, tmp_path):
    tokens = ["<bos>", "the", "keys", "to", "the", "cabinet"]
    to_neuronpedia(positional_circuit, tmp_path / "a.json", prompt_tokens=tokens, slug="s")
    document = json.loads((tmp_path / "a.json").read_text())
    assert document["metadata"]["prompt_tokens"] == tokens
    for node in document["nodes"]:
        data = positional_circuit.nodes[node["circuit_node"]]
        if data["position"] >= 0:
            assert node["ctx_idx"] == data["position"]
    check_viewer_file(document, positional_circuit)
    # unknown tokens: one placeholder per position
    to_neuronpedia(positional_circuit, tmp_path / "b.json")
    document = json.loads((tmp_path / "b.json").read_text())
    last = max(d["position"] for _, d in positional_circuit.nodes(data=True))
    assert len(document["metadata"]["prompt_tokens"]) == last + 1
    assert all(0 <= n["ctx_idx"] <= last for n in document["nodes"])


# --------------------------------------------------------------------------- HTML


def test_html_contains_every_node(labelled, positional_circuit, tmp_path):
    graph, _ = labelled
    for name, circuit in (("sum", graph), ("none", positional_circuit)):
        path = to_html(
            circuit, tmp_path / f"{name}.html", title="a circuit", pruned=False, max_nodes=None
        )
        page = path.read_text()
        assert "plotly" in page.lower()
        for node in circuit.nodes:
            assert node in page, node  # the node table
            assert json.dumps(node).replace("/", "\\u002f") in page, node  # the plot's data


def test_html_draws_many_edges_in_a_few_traces(tmp_path):
    rng = random.Random(1)
    graph = nx.DiGraph(settings={"metric": "m"}, metric_clean=1.0, metric_patch=0.0)
    places = ["resid.0", "attn.1", "mlp.1", "resid.1"]
    for place in places:
        for feature in range(50):
            graph.add_node(
                f"{place}/{feature}", place=place, kind=place.split(".")[0],
                layer=int(place[-1]), feature=feature, is_error=False, position=-1,
                effect=rng.uniform(-1, 1), activation=rng.uniform(0, 2), label="",
            )  # fmt: skip
    graph.add_node(
        "metric", place="metric", kind="metric", layer=2, feature=-1, is_error=False,
        position=-1, effect=1.0, activation=float("nan"), label="m",
    )  # fmt: skip
    names = [n for n in graph.nodes if n != "metric"]
    while graph.number_of_edges() < 1000:
        u, v = rng.sample(names, 2)
        graph.add_edge(u, v, weight=rng.uniform(-1, 1))
    start = time.perf_counter()
    page = to_html(graph, tmp_path / "big.html").read_text()
    assert time.perf_counter() - start < 20
    assert page.count('"type":"scatter"') <= 12


def plot_traces(page):
    """The traces of the plotly figure in an exported page."""
    start = page.index("Plotly.newPlot(")
    start = page.index("[", start)
    traces, _ = json.JSONDecoder().raw_decode(page[start:])
    return traces


def node_points(page):
    """Node id -> (trace name, the point's visible text, its symbol) in an exported page."""
    points = {}
    for trace in plot_traces(page):
        if "ids" not in trace:
            continue
        symbols = trace["marker"]["symbol"]
        for i, name in enumerate(trace["ids"]):
            symbol = symbols[i] if isinstance(symbols, list) else symbols
            points[name] = (trace["name"], trace["text"][i], symbol)
    return points


def reaches_metric(graph):
    return {n for n in graph if n != "metric" and nx.has_path(graph, n, "metric")}


def test_html_default_figure_is_the_pruned_circuit(labelled, tmp_path):
    graph = labelled[0].copy()
    add_unlinked_feature(graph, effect=9.0)  # the strongest node, but no path to the metric
    page = to_html(graph, tmp_path / "c.html").read_text()
    points = node_points(page)
    assert set(points) - {"metric"} == reaches_metric(graph)
    assert "resid.2/23" not in points and "resid.2/23" in page  # in the table only
    total = graph.number_of_nodes() - 1
    assert f"circuit: {len(points) - 1} of {total} nodes" in page
    for name, (kind, text, symbol) in points.items():
        data = graph.nodes[name]
        if name == "metric":
            assert (kind, symbol) == ("metric", "diamond")
        elif data["is_error"]:
            assert (kind, text, symbol) == ("error nodes", "error", "square")
        else:
            assert kind == "features" and symbol == "circle"
            marked = [h["text"].split("«")[-1].split("»")[0].strip() for h in data["top_contexts"]]
            expected = list(dict.fromkeys(t[:9] + ("…" if len(t) > 9 else "") for t in marked))
            assert text == ("/".join(expected[:2]) or f"#{data['feature']}")
            assert text  # every feature has a visible label


def test_html_keeps_at_most_max_nodes_that_reach_the_metric(tmp_path):
    rng = random.Random(3)
    graph = nx.DiGraph(settings={"metric": "m"}, metric_clean=1.0, metric_patch=0.0)
    places = ["resid.0", "resid.1", "resid.2", "resid.3"]
    for layer, place in enumerate(places):
        for feature in range(40):
            graph.add_node(
                f"{place}/{feature}", place=place, kind="resid", layer=layer, feature=feature,
                is_error=False, position=-1, effect=rng.uniform(-1, 1), activation=1.0, label="",
            )  # fmt: skip
    graph.add_node(
        "metric", place="metric", kind="metric", layer=4, feature=-1, is_error=False,
        position=-1, effect=1.0, activation=float("nan"), label="m",
    )  # fmt: skip
    for layer in range(3):
        for _ in range(150):
            u, v = rng.randrange(40), rng.randrange(40)
            graph.add_edge(
                f"{places[layer]}/{u}", f"{places[layer + 1]}/{v}", weight=rng.gauss(0, 1)
            )
    for feature in range(0, 40, 2):
        graph.add_edge(f"resid.3/{feature}", "metric", weight=rng.gauss(0, 1))
    assert len(reaches_metric(graph)) > 60
    for limit in (60, 12):
        points = node_points(to_html(graph, tmp_path / "c.html", max_nodes=limit).read_text())
        shown = set(points) - {"metric"}
        assert 0 < len(shown) <= limit
        assert shown == reaches_metric(graph.subgraph(shown | {"metric"}))
    with pytest.raises(ValueError, match="max_nodes must be at least 1, got 0"):
        to_html(graph, tmp_path / "c.html", max_nodes=0)


def test_html_positional_columns_are_prompt_tokens(positional_circuit, tmp_path):
    graph = positional_circuit.copy()
    tokens = ["<bos>", " the", " keys", " to", " the", " cabinet"]
    graph.graph["settings"] = dict(graph.graph["settings"], prompt_tokens=tokens)
    page = to_html(graph, tmp_path / "p.html").read_text()
    start = page.index("Plotly.newPlot(")
    assert '"title":{"text":"prompt token"}' in page
    ticks = json.loads(page[page.index('"ticktext":', start) + 11 :].split("]")[0] + "]")
    # the tokens under the axis, as HTML text (plotly reads tick text as markup)
    assert ticks == [html.escape(t) for t in tokens[: len(ticks)]] and len(ticks) >= 2
    x_of = {}
    for trace in plot_traces(page):
        if "ids" in trace:
            x_of.update(zip(trace["ids"], trace["x"], strict=True))
    for name, x in x_of.items():
        if name != "metric":  # each node within its position's column
            assert abs(x - graph.nodes[name]["position"]) < 0.5


def test_supernodes_group_features_by_decoder_cosine(labelled, setup, tmp_path):
    from sparse_circuits.circuits.discovery.supernodes import group_supernodes

    _, _, dictionaries, _ = setup
    graph = labelled[0].copy()
    place, features = max(
        (
            (
                p,
                [
                    d["feature"]
                    for _, d in graph.nodes(data=True)
                    if d["place"] == p and not d["is_error"]
                ],
            )
            for p in PLACES
        ),
        key=lambda item: len(item[1]),
    )
    assert len(features) >= 2
    dictionaries = dict(dictionaries)
    twin = random_dictionary("topk", D_MODEL, 24, seed=0)
    with torch.no_grad():
        twin.W_dec.copy_(dictionaries[place].W_dec)
        twin.W_dec[features[1]] = 2 * twin.W_dec[features[0]]  # cosine 1 with the first
    dictionaries[place] = twin
    group_supernodes(graph, dictionaries, min_cosine=0.9)
    # independent: every pair of one place with decoder cosine >= 0.9 shares a supernode
    for p in PLACES:
        names = [n for n, d in graph.nodes(data=True) if d["place"] == p and not d["is_error"]]
        for a in names:
            for b in names:
                wa = dictionaries[p].W_dec[graph.nodes[a]["feature"]]
                wb = dictionaries[p].W_dec[graph.nodes[b]["feature"]]
                if a != b and float(torch.cosine_similarity(wa, wb, dim=0)) >= 0.9:
                    assert graph.nodes[a]["supernode"] == graph.nodes[b]["supernode"]
    first, second = (f"{place}/{f}" for f in features[:2])
    group = graph.nodes[first]["supernode"]
    assert group.startswith(f"{place}/S") and graph.nodes[second]["supernode"] == group
    members = [n for n, d in graph.nodes(data=True) if d.get("supernode") == group]
    page = to_html(graph, tmp_path / "s.html", pruned=False, max_nodes=None).read_text()
    points = node_points(page)
    assert group in points and not set(members) & set(points)
    assert points[group][2] == "hexagon" and points[group][1].startswith(f"{len(members)}× ")
    assert f"supernode {group}: {len(members)} features" in page  # expandable in the table
    with pytest.raises(ValueError, match="min_cosine must be between -1 and 1, got 2"):
        group_supernodes(graph, dictionaries, min_cosine=2)


CONSOLE_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message)));
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); __consoleError(...args); };
window.addEventListener("load", () => setTimeout(() => {
  const report = document.createElement("pre");
  report.id = "console-report";
  report.textContent = JSON.stringify({
    errors: window.__errors,
    plots: document.querySelectorAll(".main-svg").length,
  });
  document.body.appendChild(report);
}, 500));
</script>"""


def console_report(page_path, tmp_path):
    """Console errors and plotly SVG count of a page rendered by headless Chromium (a probe
    script put first in its head records them into the DOM, read back with --dump-dom)."""
    import subprocess

    probed = tmp_path / f"probed-{page_path.name}"
    probed.write_text(page_path.read_text().replace("<head>", "<head>\n" + CONSOLE_PROBE, 1))
    result = subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
            "--dump-dom", probed.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    dom = result.stdout
    start = dom.index('<pre id="console-report">') + len('<pre id="console-report">')
    return json.loads(html.unescape(dom[start : dom.index("</pre>", start)]))


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")
def test_html_renders_without_console_errors(labelled, positional_circuit, tmp_path):
    for name, graph in (("sum", labelled[0]), ("none", positional_circuit)):
        path = to_html(graph, tmp_path / f"{name}.html")
        report = console_report(path, tmp_path)
        assert report["errors"] == [], name
        assert report["plots"] >= 1, name
    # the probe sees errors: a page that throws fails the check
    broken = tmp_path / "broken.html"
    broken.write_text(
        (tmp_path / "sum.html")
        .read_text()
        .replace("</body>", "<script>undefinedCall();</script></body>")
    )
    assert any("undefinedCall" in e for e in console_report(broken, tmp_path)["errors"])


# --------------------------------------------------------------------------- labels


def test_top_contexts_match_brute_force(setup, contexts):
    model, adapter, dictionaries, _ = setup
    # mlp.1 a transcoder: it reads mlp_in.1, a module input
    dictionaries = dict(dictionaries)
    dictionaries["mlp.1"] = random_dictionary(
        "relu", D_MODEL, 24, seed=11, center_input=False, place="mlp_in.1", writes="mlp.1"
    )
    nodes = [(p, f, -1) for p in PLACES for f in range(24)] + [
        ("resid.1", 3, 2),
        ("attn.1", -1, -1),
    ]
    k, window = 5, 4
    got = top_activating_contexts(
        model, adapter, dictionaries, nodes, contexts, k=k, window=window, batch_size=6,
        progress=False,
    )  # fmt: skip
    assert ("attn.1", -1, -1) not in got  # error nodes get no contexts
    assert got[("resid.1", 3, 2)] == got[("resid.1", 3, -1)]  # position ignored
    with torch.no_grad():
        acts, _ = hooked_run(
            model, adapter, contexts, read=[dictionaries[p].config.reads_at(p) for p in PLACES]
        )
    tokenizer = model.tokenizer
    n_checked = 0
    for place in PLACES:
        with torch.no_grad():
            f_NTF = dictionaries[place].encode(acts[dictionaries[place].config.reads_at(place)])
        for feature in range(24):
            a_NT = f_NTF[:, :, feature]
            top = a_NT[:, 1:].flatten().sort(descending=True).values[:k]  # BOS left out
            expected = top[top > 0].tolist()
            hits = got[(place, feature, -1)]
            assert [h["activation"] for h in hits] == pytest.approx(expected, rel=1e-4, abs=1e-5)
            # equal tokens after BOS give exactly equal activations: ties may pick any of them
            assert len({(h["context"], h["position"]) for h in hits}) == len(hits)
            for hit in hits:
                context, position = hit["context"], hit["position"]
                assert position >= 1
                assert float(a_NT[context, position]) == pytest.approx(
                    hit["activation"], rel=1e-4, abs=1e-5
                )
                token = tokenizer.decode([int(contexts[context, position])])
                assert hit["text"].endswith(f"«{token}»")
                assert len(hit["text"].split()) <= window
                n_checked += 1
    assert n_checked > 100


class PieceTokenizer:
    """A tokenizer whose token ``i`` decodes to ``pieces[i]``, spaces and newlines included."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


@pytest.mark.parametrize(
    "last, marked",
    [(" of", "18 «of»"), (" ", "18«␣»"), ("  ", "18«␣␣»"), ("\n", "18«↵»"), ("x\ny", "18«x↵y»")],
)
def test_marked_window_shows_which_token_it_marks(last, marked):
    """A token of whitespace alone is marked itself (not an empty ``«»``)."""
    tokenizer = PieceTokenizer(["18", last])
    assert marked_window(tokenizer, [0, 1]) == marked
    assert marked_window(tokenizer, [1]) == marked.removeprefix("18")


def test_labels_land_on_nodes(labelled, tmp_path):
    graph, labels = labelled
    labelled_nodes = 0
    for _, data in graph.nodes(data=True):
        if data["place"] == "metric" or data["is_error"]:
            assert "top_contexts" not in data
            continue
        hits = labels[(data["place"], data["feature"], data["position"])]
        assert data["top_contexts"] == hits
        assert data["label"] == " | ".join(hit["text"] for hit in hits[:3])
        labelled_nodes += bool(hits)
    assert labelled_nodes > 0
    save_circuit(graph, tmp_path / "c.json")  # the circuit JSON keeps the contexts
    back = load_circuit(tmp_path / "c.json")
    assert dict(back.nodes(data="top_contexts")) == dict(graph.nodes(data="top_contexts"))


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("fmt", ["graphml", "neuronpedia", "html"])
def test_exports_are_atomic(circuit, tmp_path, fmt):
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / f"c.{fmt}"
    target.write_text("old")
    export(circuit, target, fmt)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"c.{fmt}"]
    assert target.read_text() != "old"
    with pytest.raises(FileNotFoundError, match="missing"):
        export(circuit, tmp_path / "missing" / f"c.{fmt}", fmt)
    assert not (tmp_path / "missing").exists()


def test_unknown_format(circuit, tmp_path):
    with pytest.raises(ValueError, match="graphml, neuronpedia, html"):
        export(circuit, tmp_path / "c.x", "dot")


def test_render_png_without_chromium(circuit, tmp_path):
    to_html(circuit, tmp_path / "c.html")
    with pytest.raises(RenderError, match="no Chromium"):
        render_png(tmp_path / "c.html", tmp_path / "c.png", chromium=tmp_path / "chromium")


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")
def test_render_png(circuit, tmp_path):
    to_html(circuit, tmp_path / "c.html")
    render_png(tmp_path / "c.html", tmp_path / "c.png")
    data = (tmp_path / "c.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.html", "c.png"]


def test_exports_of_an_empty_circuit_and_of_a_read_back_graphml(circuit, tmp_path):
    empty = nx.DiGraph(settings={}, metric_clean=1.0, metric_patch=0.5)
    empty.add_node(
        "metric", place="metric", kind="metric", layer=3, feature=-1, is_error=False,
        position=-1, effect=0.5, activation=float("nan"), label="metric",
    )  # fmt: skip
    for fmt in FORMATS:
        export(empty, tmp_path / f"empty.{fmt}", fmt)
    document = json.loads((tmp_path / "empty.neuronpedia").read_text())
    assert [n["feature_type"] for n in document["nodes"]] == ["logit"]
    # a graph read back from GraphML lacks NaN activations: the other writers cope
    to_graphml(circuit, tmp_path / "c.graphml")
    back = nx.read_graphml(tmp_path / "c.graphml")
    for fmt in ("neuronpedia", "html"):
        export(back, tmp_path / f"back.{fmt}", fmt)
    document = json.loads((tmp_path / "back.neuronpedia").read_text())
    assert len(document["links"]) == circuit.number_of_edges()
