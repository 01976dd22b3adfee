"""The examples, run as a user runs them (``python examples/NAME.py ...`` in a fresh process,
from a scratch folder) with small settings, checking what each one writes and prints."""

import ast
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from sparse_circuits.circuits.data.prompts import tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig
from sparse_circuits.circuits.discovery.discover import DiscoverConfig, discover_circuit
from sparse_circuits.circuits.discovery.graph import load_circuit, save_circuit
from sparse_circuits.circuits.export import CHROMIUM
from sparse_circuits.dictionaries import load_dictionary

from .conftest import D_MODEL, random_dictionary, tiny_model
from .reference import EXAMPLES as PROMPTS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STARTER = EXAMPLES.parent / "starter" / "smollm2-135m"


def run_example(name: str, *args, cwd: Path, env: dict[str, str] | None = None):
    """``python examples/<name> args...`` in ``cwd``; the finished process."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def succeeded(result) -> str:
    """The example's stdout, after checking that it exited 0."""
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_examples_are_all_tested():
    tested = {"discover_circuit.py", "export_and_plot.py", "steer_generation.py"}
    tested |= {"train_dictionary.py", "debias_classifier.py", "pythia_feature_circuits.py"}
    tested |= {"shift_generalisation.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.fixture(scope="module")
def tiny_circuit(tmp_path_factory) -> Path:
    """A circuit file found on a tiny random model (the export needs no real model)."""
    model, adapter = tiny_model("llama", seed=11)
    places = ["resid.0", "mlp.1", "resid.1", "resid.2"]
    dictionaries = {
        place: random_dictionary("topk", D_MODEL, 24, seed=i, place=place)
        for i, place in enumerate(places)
    }
    batches = tokenize_prompts(model.tokenizer, PROMPTS)
    config = DiscoverConfig(AttributionConfig(), top_k=12, edge_threshold=0.0)
    graph, _ = discover_circuit(model, adapter, dictionaries, batches, config, progress=False)
    return save_circuit(graph, tmp_path_factory.mktemp("tiny") / "circuit.json")


def test_export_and_plot(tiny_circuit, tmp_path):
    out = succeeded(
        run_example("export_and_plot.py", tiny_circuit, "--out-dir", "exported", cwd=tmp_path)
    )
    folder = tmp_path / "exported"
    circuit = load_circuit(tiny_circuit)
    assert circuit.number_of_nodes() == 13 and circuit.number_of_edges() > 0

    graphml = nx.read_graphml(folder / "circuit.graphml")
    assert set(graphml.nodes) == set(circuit.nodes)
    assert graphml.number_of_edges() == circuit.number_of_edges()

    neuronpedia = json.loads((folder / "circuit.np.json").read_text())
    assert {"metadata", "qParams", "nodes", "links"} <= set(neuronpedia)
    linked = {n for edge in circuit.edges for n in edge} | {"metric"}  # unlinked ones left out
    assert {n["circuit_node"] for n in neuronpedia["nodes"]} == linked
    assert len(neuronpedia["links"]) == circuit.number_of_edges()

    html = (folder / "circuit.html").read_text()
    assert "plotly" in html and "<html" in html.lower()
    if CHROMIUM.exists():
        assert (folder / "circuit.png").read_bytes().startswith(b"\x89PNG")
    else:
        assert "skipped the PNG" in out
    for name in ("circuit.graphml", "circuit.np.json", "circuit.html"):
        assert name in out


@pytest.mark.parametrize(
    "offline",
    [
        {"HF_HUB_OFFLINE": "1"},
        # no network: the hub's host refuses connections
        {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "https://127.0.0.1:9"},
    ],
    ids=["HF_HUB_OFFLINE", "unreachable"],
)
def test_pythia_offline_fails_with_one_line(tmp_path, offline):
    result = run_example(
        "pythia_feature_circuits.py", "--dictionaries", tmp_path, cwd=tmp_path, env=offline
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and "hub" in last and "network" in last
    assert "pythia-70m-deduped" in last
    assert result.stdout == "" and not (tmp_path / "pythia_circuit.json").exists()


# ------------------------------------------------------------ on the real default model


@pytest.mark.slow
def test_discover_circuit(tmp_path):
    places = ["resid.3", "resid.9"]
    out = succeeded(
        run_example(
            "discover_circuit.py",
            *("--examples", 4, "--places", "resid.[39]", "--out", "circuit.json"),
            cwd=tmp_path,
        )
    )
    graph = load_circuit(tmp_path / "circuit.json")
    summary = re.search(r"circuit.json: (\d+) nodes, (\d+) edges", out)
    assert summary, out
    assert int(summary[1]) == graph.number_of_nodes() - 1 > 0  # all but the metric node
    assert int(summary[2]) == graph.number_of_edges()
    settings = graph.graph["settings"]
    assert settings["places"] == places and settings["n_examples"] == 4
    assert {data["place"] for _, data in graph.nodes(data=True)} <= {*places, "metric"}
    assert any(not data["is_error"] for n, data in graph.nodes(data=True) if n != "metric")
    scores = re.search(r"held-out faithfulness (\S+), completeness (\S+)", out)
    assert scores and all(math.isfinite(float(s)) for s in scores.groups()), out


@pytest.mark.slow
def test_steer_generation(tmp_path):
    out = succeeded(run_example("steer_generation.py", "--max-new-tokens", 6, cwd=tmp_path))
    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    unsteered = ast.literal_eval(lines["unsteered"].strip())
    steered = ast.literal_eval(lines["steered"].strip())
    assert unsteered.strip() and steered.strip()
    assert steered != unsteered


@pytest.mark.slow
def test_train_dictionary(tmp_path):
    result = run_example(
        "train_dictionary.py",
        *("--place", "resid.3", "--tokens", 2048, "--batch-size", 512),
        *("--dict-size", 128, "--k", 8, "--eval-tokens", 256, "--out", "sae"),
        cwd=tmp_path,
    )
    metrics = json.loads(succeeded(result))
    assert 0 < metrics["fvu"] < 2 and 0 < metrics["l0"] <= 8
    dictionary = load_dictionary(tmp_path / "sae")
    assert (dictionary.d_in, dictionary.d_sae) == (576, 128)
    assert dictionary.config.place == "resid.3" and dictionary.config.k == 8
    assert dictionary.config.metrics["fvu"] == pytest.approx(metrics["fvu"])


@pytest.mark.slow
def test_debias_classifier(tmp_path):
    result = run_example(
        "debias_classifier.py",
        "--place",
        "resid.10",
        "--examples",
        16,
        "--out",
        "shift",
        cwd=tmp_path,
    )
    out = succeeded(result)
    results = json.loads((tmp_path / "shift" / "results.json").read_text())
    methods = {"original", "shift", "shift_retrain", "random", "neuron_skyline", "oracle"}
    assert set(results["methods"]) == methods
    for name, scores in results["methods"].items():
        assert all(0 <= scores[k] <= 1 for k in ("task_acc", "spurious_acc", "worst_group_acc"))
        assert name in out
    assert results["methods"]["shift"]["ablated"]  # the judge chose features to ablate
    assert results["settings"]["n_train"] == 16 and results["settings"]["place"] == "resid.10"
    assert "plotly" in (tmp_path / "shift" / "results.html").read_text()
    listed = (tmp_path / "shift" / "candidates.md").read_text()
    assert listed.count("\n") == 2 + len(results["candidates"])
    assert all(c["top_contexts"] for c in results["candidates"][:3])


@pytest.mark.slow
def test_shift_generalisation(tmp_path):
    """On the report generator and the development one, with every diagnosis: the table's
    gap closed is (acc - original) / (oracle - original) of the results it wrote."""
    result = run_example(
        "shift_generalisation.py",
        *("--place", "resid.9", "--generators", "profiles,bios", "--examples", 24),
        *("--attribution-examples", 8, "--diagnose", "--out", "gen"),
        cwd=tmp_path,
    )
    out = succeeded(result)
    shipped = {int(p.name.split(".")[1]): p for p in STARTER.glob("resid.*")}
    places = [shipped[layer] for layer in sorted(shipped) if layer <= 9]  # up to the probe
    for name in ("profiles", "bios"):
        results = json.loads((tmp_path / "gen" / name / "results.json").read_text())
        methods = results["methods"]
        assert results["settings"]["places"] == [p.name for p in places]
        assert f"## {name}: probe at resid.9" in out
        for method in ("shift", "shift_retrain"):
            gap = methods["oracle"]["worst_group_acc"] - methods["original"]["worst_group_acc"]
            closed = methods[method]["worst_group_acc"] - methods["original"]["worst_group_acc"]
            expected = "nan" if gap == 0 else f"{closed / gap:.2f}"
            assert f"gap closed by {method}: {expected}" in out
        readout = results["diagnostics"]["parts_readout"]
        assert set(readout) == {"before", "after"}
        assert all(0 <= v["group_acc"] <= 1 for v in readout["after"].values())
        features = sum(load_dictionary(p).d_sae for p in places)
        assert results["diagnostics"]["every_feature"]["total"]["features"] == features
