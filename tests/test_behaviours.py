"""The unsupervised pipeline on a tiny model with planted behaviours: contexts, vectors and
clusters against independent computations, the site (links, Chromium), resume after kill -9,
and two processes against one."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from sparse_circuits.circuits.behaviours.cluster_circuit import (
    ClusterCircuitConfig,
    split_members,
    summarize,
)
from sparse_circuits.circuits.behaviours.clustering import (
    ClusterConfig,
    angular_affinity,
    cluster_vectors,
    purity,
    sweep_sizes,
)
from sparse_circuits.circuits.behaviours.contexts import (
    ContextConfig,
    ContextError,
    Contexts,
    find_contexts,
    token_stream,
)
from sparse_circuits.circuits.behaviours.describe import describe_contexts
from sparse_circuits.circuits.behaviours.pipeline import (
    BehavioursConfig,
    run_behaviours,
    shard_clusters,
)
from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.discovery.attribution import AttributionConfig
from sparse_circuits.circuits.discovery.discover import DiscoverConfig
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.graph import load_circuit, selection_from_circuit
from sparse_circuits.circuits.discovery.metrics import AnswerLogProb
from sparse_circuits.circuits.export import CHROMIUM, to_html
from sparse_circuits.circuits.model.activations import uses_bos
from sparse_circuits.circuits.model.adapters import torch_module
from sparse_circuits.errors import ConfigError

from .conftest import D_MODEL, random_dictionary, tiny_model
from .reference import hooked_run, reference_features

ROOT = Path(__file__).resolve().parents[1]
PLACES = ["resid.0", "resid.1", "resid.2"]
BEHAVIOURS = {
    "dogs": "the dog dogs runs run near cat".split(),
    "keys": "keys key to cabinets cabinet of".split(),
    "people": "he she was were his her".split(),
    "workers": "man men woman women nurse professor".split(),
}
"""Planted behaviours: each document draws its words from one behaviour's vocabulary."""


def planted_corpus(
    documents_per_behaviour: int = 6, words: int = 20
) -> tuple[list[str], list[str]]:
    """Documents and the behaviour of each, in a fixed interleaved order."""
    rng = random.Random(0)
    documents, behaviours = [], []
    for _ in range(documents_per_behaviour):
        for name, vocabulary in BEHAVIOURS.items():
            documents.append(" ".join(rng.choice(vocabulary) for _ in range(words)))
            behaviours.append(name)
    return documents, behaviours


def planted_model():
    """The tiny Llama with each behaviour's words embedded near one random direction of its
    own: its representations separate the behaviours, as a trained model's would."""
    model, adapter = tiny_model("llama")
    generator = torch.Generator().manual_seed(0)
    embedding = torch_module(model).model.embed_tokens.weight
    with torch.no_grad():
        for vocabulary in BEHAVIOURS.values():
            direction = torch.randn(D_MODEL, generator=generator)
            for word in vocabulary:
                noise = 0.3 * torch.randn(D_MODEL, generator=generator)
                embedding[model.tokenizer.convert_tokens_to_ids(word)] = direction + noise
    return model, adapter


def planted_dictionaries():
    return {
        place: random_dictionary("topk", D_MODEL, 24, seed=i, place=place)
        for i, place in enumerate(PLACES)
    }


@pytest.fixture(scope="module")
def planted():
    model, adapter = planted_model()
    documents, behaviours = planted_corpus()
    config = ContextConfig(n_contexts=120, max_loss=100.0, prefix_length=6, score_batch_size=32)
    contexts = find_contexts(model, adapter, documents, config, progress=False)
    return model, adapter, planted_dictionaries(), documents, behaviours, contexts


def hf_log_probs(model, ids_BT: torch.Tensor) -> torch.Tensor:
    """``(B, V)`` log-probabilities after each prefix, by a plain forward."""
    with torch.no_grad():
        return torch_module(model)(ids_BT).logits[:, -1].float().log_softmax(-1)


# --------------------------------------------------------------------------- contexts


def test_answer_log_prob_matches_a_plain_forward(planted):
    model, adapter, _, _, _, contexts = planted
    batch = contexts.batch(range(5))
    with torch.no_grad(), model.trace(batch.clean_ids):
        value = AnswerLogProb()(model, adapter, batch).save()
    expected = hf_log_probs(model, batch.clean_ids)[torch.arange(5), batch.clean_answer]
    torch.testing.assert_close(value, expected)


def test_token_stream_numbers_documents_and_positions():
    tokenizer = tiny_model("llama")[0].tokenizer
    documents = ["the dog runs", "a cat", "keys to the cabinet is"]
    stream, document, position = token_stream(tokenizer, documents)
    expected_ids, expected_doc, expected_pos = [], [], []
    for i, text in enumerate(documents):
        if i:
            expected_ids.append(tokenizer.eos_token_id)
            expected_doc.append(-1)
            expected_pos.append(-1)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        expected_ids += ids
        expected_doc += [i] * len(ids)
        expected_pos += list(range(len(ids)))
    assert stream.tolist() == expected_ids
    assert document.tolist() == expected_doc
    assert position.tolist() == expected_pos


def test_contexts_are_prefixes_of_their_documents_with_their_own_loss(planted):
    model, _, _, documents, _, contexts = planted
    tokenizer = model.tokenizer
    assert len(contexts) == 120
    assert contexts.ids_NT.shape == (120, 6)
    bos = [tokenizer.bos_token_id] if uses_bos(tokenizer) else []  # the tiny one adds none
    for i in range(len(contexts)):
        doc_ids = tokenizer(documents[contexts.documents_N[i]], add_special_tokens=False).input_ids
        at = int(contexts.positions_N[i])
        assert contexts.ids_NT[i].tolist() == [*bos, *doc_ids[at - 6 + len(bos) : at]]
        assert int(contexts.answers_N[i]) == doc_ids[at]
    log_probs = hf_log_probs(model, contexts.ids_NT)
    losses = -log_probs[torch.arange(len(contexts)), contexts.answers_N]
    torch.testing.assert_close(contexts.losses_N, losses)
    keys = {
        (*row, answer)
        for row, answer in zip(contexts.ids_NT.tolist(), contexts.answers_N.tolist(), strict=True)
    }
    assert len(keys) == len(contexts), "contexts repeat"


def test_contexts_keep_only_low_losses_and_follow_the_seed(planted):
    model, adapter, _, documents, _, everything = planted
    max_loss = float(everything.losses_N.median())  # about half the candidates pass
    config = ContextConfig(n_contexts=40, max_loss=max_loss, prefix_length=6, seed=1)
    first = find_contexts(model, adapter, documents, config, progress=False)
    again = find_contexts(model, adapter, documents, config, progress=False)
    assert len(first) == 40 and bool((first.losses_N < max_loss).all())
    assert torch.equal(first.ids_NT, again.ids_NT) and torch.equal(first.answers_N, again.answers_N)
    with pytest.raises(ConfigError, match=r"^no context has a loss below max_loss 1e-06 \(scored"):
        find_contexts(
            model, adapter, documents, ContextConfig(max_loss=1e-6, prefix_length=6), progress=False
        )
    with pytest.raises(
        ConfigError,
        match="^no document has more than 30 tokens, so none holds a context of prefix_length 30$",
    ):
        find_contexts(model, adapter, documents, ContextConfig(prefix_length=30), progress=False)


def test_contexts_file_round_trip_and_bad_file(planted, tmp_path):
    contexts = planted[-1]
    contexts.save(tmp_path / "c.safetensors")
    back = Contexts.load(tmp_path / "c.safetensors")
    for name, tensor in vars(contexts).items():
        assert torch.equal(getattr(back, name), tensor), name
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ContextError, match="bad.safetensors: not a readable safetensors file"):
        Contexts.load(tmp_path / "bad.safetensors")


# --------------------------------------------------------------------------- vectors


def hook_vectors(model, adapter, dictionaries, batch: PromptBatch, description: str):
    """The describe vectors by plain PyTorch: forward hooks keep each place's output, autograd
    gives d log p(answer) / d output, the encoder written from the weights the features and
    the chain rule through ``decode`` their gradient (``x = f @ W_dec + b_dec + error``)."""
    outputs, logits_BTV = hooked_run(model, adapter, batch.clean_ids, read=PLACES)
    for value in outputs.values():
        value.retain_grad()
    log_probs_BV = logits_BTV[:, -1].log_softmax(-1)
    log_probs_BV[torch.arange(len(batch)), batch.clean_answer].sum().backward()
    rows = []
    for place in PLACES:
        x_BD, grad_BD = outputs[place][:, -1].detach(), outputs[place].grad[:, -1]
        dictionary = dictionaries[place]
        f_BF = reference_features(dictionary, x_BD)
        if description == "gradients":
            rows.append(grad_BD)
        elif description == "activations":
            rows.append(f_BF)
        else:
            rows.append(f_BF * (grad_BD @ dictionary.W_dec.detach().T))
    torch_module(model).zero_grad()
    return torch.cat(rows, dim=1)


@pytest.mark.parametrize("description", ["attribution", "activations", "gradients"])
def test_vectors_match_plain_pytorch(planted, description):
    model, adapter, dictionaries, _, _, contexts = planted
    vectors = describe_contexts(
        model, adapter, dictionaries, contexts, description, batch_size=7, progress=False
    )
    width = 24 if description != "gradients" else D_MODEL
    assert vectors.blocks == [(place, width) for place in PLACES]
    expected = hook_vectors(
        model, adapter, dictionaries, contexts.batch(range(len(contexts))), description
    )
    torch.testing.assert_close(
        torch.from_numpy(vectors.matrix.toarray()), expected.float(), atol=1e-5, rtol=1e-4
    )
    if description != "gradients":  # sparse where the features are: TopK keeps 6 of 24
        assert vectors.matrix.nnz <= len(contexts) * len(PLACES) * 6


# --------------------------------------------------------------------------- clustering


def test_angular_affinity_by_hand():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    expected = np.array(
        [
            [1.0, 0.5, 0.0, 0.75],
            [0.5, 1.0, 0.5, 0.75],
            [0.0, 0.5, 1.0, 0.25],
            [0.75, 0.75, 0.25, 1.0],
        ]
    )
    np.testing.assert_allclose(angular_affinity(vectors), expected, atol=1e-7)


def test_purity_by_hand():
    labels = [0, 0, 0, 1, 1, -1, 2]
    behaviours = ["a", "a", "b", "b", "b", "a", "c"]
    score = purity(labels, behaviours)
    assert score.overall == pytest.approx(5 / 6)
    assert score.per_behaviour["a"] == {"cluster": 0, "recall": 1.0, "purity": pytest.approx(2 / 3)}
    assert score.per_behaviour["b"] == {"cluster": 1, "recall": pytest.approx(2 / 3), "purity": 1.0}


def test_sweep_sizes():
    assert sweep_sizes(400) == (5, 10, 20, 40)
    assert sweep_sizes(3) == (2,)


@pytest.mark.parametrize(
    ("algorithm", "clusters"), [("spectral", (2, 3, 4, 6, 8)), ("kmeans", (4,))]
)
def test_clustering_recovers_planted_behaviours(planted, algorithm, clusters):
    """Activation vectors of the planted model's contexts separate its behaviours: clustering
    recovers them, and the spectral sweep over cluster counts picks the planted number."""
    model, adapter, dictionaries, _, behaviours, contexts = planted
    truth = [behaviours[d] for d in contexts.documents_N.tolist()]
    vectors = describe_contexts(
        model, adapter, dictionaries, contexts, "activations", progress=False
    )
    clustering = cluster_vectors(
        vectors.matrix, ClusterConfig(clusters=clusters, algorithm=algorithm)
    )
    score = purity(clustering.labels, truth)
    print(f"\n{algorithm}: purity {score.overall:.3f}, {clustering.n_clusters} clusters")
    assert clustering.n_clusters == len(BEHAVIOURS), clustering.sweep
    assert score.overall >= 0.95
    assert all(b["purity"] >= 0.9 and b["recall"] >= 0.9 for b in score.per_behaviour.values())
    sizes = np.bincount(clustering.labels)
    assert list(sizes) == sorted(sizes, reverse=True), "clusters are numbered by size"


def test_zero_vectors_are_left_unclustered():
    vectors = scipy.sparse.csr_matrix(
        np.array([[1.0, 0], [0, 0], [1.0, 0.1], [0, 1.0], [0.1, 1.0]])
    )
    clustering = cluster_vectors(vectors, ClusterConfig(clusters=(2,), algorithm="spectral"))
    assert clustering.labels[1] == -1
    assert (
        clustering.labels[0] == clustering.labels[2] != clustering.labels[3] == clustering.labels[4]
    )
    with pytest.raises(ValueError, match="every context's vector is zero"):
        cluster_vectors(scipy.sparse.csr_matrix((3, 4)), ClusterConfig(clusters=(2,)))


def test_shard_clusters_balances_work():
    shares = shard_clusters([50, 40, 30, 20, 10, 5], 2, examples=35)
    assert sorted(c for share in shares for c in share) == list(range(6))
    assert shares == [[0, 2, 5], [1, 3, 4]]  # loads 35+30+5 = 70 and 35+20+10 = 65
    assert shard_clusters([3, 2], 1, examples=100) == [[0, 1]]


# --------------------------------------------------------------------------- one cluster


def test_split_and_summary(planted):
    model, _, _, _, _, contexts = planted
    members = list(range(10, 30))
    discovery, held_out = split_members(members, held_out=0.2, examples=12, seed=3)
    assert len(held_out) == 4 and len(discovery) == 12
    assert not set(discovery) & set(held_out) and set(discovery) | set(held_out) <= set(members)
    assert split_members([1, 2, 3], held_out=0.2, examples=100, seed=0)[1] == []
    tokenizer = model.tokenizer

    def most_frequent(tokens):  # ties in order of first appearance
        texts = [tokenizer.decode([int(t)]) for t in tokens]
        top = sorted(dict.fromkeys(texts), key=lambda t: -texts.count(t))[:3]
        return ", ".join(f'"{t}" ({texts.count(t)})' for t in top)

    rows = torch.tensor(members)
    expected = (
        f"answers {most_frequent(contexts.answers_N[rows])}; "
        f"after {most_frequent(contexts.ids_NT[rows, -1])}"
    )
    assert summarize(tokenizer, contexts, members) == expected


# --------------------------------------------------------------------------- the pipeline


def small_config(*, method: str = "attrib") -> BehavioursConfig:
    discover = DiscoverConfig(AttributionConfig(method=method), node_threshold=0.02)
    return BehavioursConfig(
        contexts=ContextConfig(n_contexts=48, max_loss=100.0, prefix_length=6),
        describe="activations",
        clustering=ClusterConfig(clusters=(4,)),
        circuits=ClusterCircuitConfig(discover, examples=8, top_features=3),
        label_windows=32,
    )


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value and not value.startswith(("http", "data:", "#")):
                self.targets.append(value)


def page_links(page: Path) -> list[str]:
    parser = Links()
    parser.feed(page.read_text())
    return parser.targets


def site_pages(out: Path) -> list[Path]:
    return sorted(out.rglob("*.html"))


@pytest.fixture(scope="module")
def site(planted, tmp_path_factory):
    model, adapter, dictionaries, documents, behaviours, _ = planted
    out = tmp_path_factory.mktemp("site")
    corpus = out.parent / "planted.txt"
    corpus.write_text("\n\n".join(documents))
    config = small_config()
    config.corpus = str(corpus)
    run = run_behaviours(
        model, adapter, dictionaries, out, config, settings={"model": "tiny"}, progress=False
    )
    return out, run, config


def test_every_cluster_has_a_circuit_and_a_line(site, planted):
    out, run, _ = site
    tokenizer = planted[0].tokenizer
    assert run.n_clusters == 4 and sorted(run.computed) == [0, 1, 2, 3] and run.skipped == []
    lines = [json.loads(line) for line in (out / "clusters.jsonl").read_text().splitlines()]
    assert [line["cluster"] for line in lines] == [0, 1, 2, 3]
    assert sum(line["size"] for line in lines) == run.n_contexts == 48
    contexts = Contexts.load(out / "contexts.safetensors")
    labels = json.loads((out / "clustering.json").read_text())["labels"]
    for line in lines:
        assert set(line) == {"cluster", "size", "summary", "faithfulness", "contexts"}
        members = [i for i, label in enumerate(labels) if label == line["cluster"]]
        assert line["size"] == len(members) == len(line["contexts"])
        assert line["contexts"] == [contexts.record(tokenizer, i) for i in members]
        assert line["summary"] == summarize(tokenizer, contexts, members)
        graph = load_circuit(out / "clusters" / str(line["cluster"]) / "circuit.json")
        settings = graph.graph["settings"]
        assert settings["metric"] == "answer_log_prob" and settings["baseline"] == "zero"
        assert settings["cluster"] == line["cluster"] and settings["places"] == PLACES
        assert graph.graph["metric_patch"] == 0.0  # the zero baseline runs no patch prompt
        assert line["faithfulness"] is None or np.isfinite(line["faithfulness"])
    first = lines[0]["contexts"][0]
    # the tiny word-level tokenizer decodes an answer alone without its space
    assert f"{first['text']} {first['answer']}" in planted[3][first["document"]]


def test_faithfulness_is_that_of_the_circuit_on_its_held_out_contexts(site, planted):
    out = site[0]
    model, adapter, dictionaries = planted[:3]
    contexts = Contexts.load(out / "contexts.safetensors")
    scored = 0
    for cluster in range(4):
        record = json.loads((out / "clusters" / str(cluster) / "result.json").read_text())
        assert not set(record["discovery"]) & set(record["held_out"])
        assert len(record["discovery"]) == min(8, record["size"] - len(record["held_out"]))
        if record["faithfulness"] is None:
            continue
        graph = load_circuit(out / "clusters" / str(cluster) / "circuit.json")
        selection = selection_from_circuit(graph, {p: (d.d_sae,) for p, d in dictionaries.items()})
        (score,) = score_selection(
            model, adapter, dictionaries, [contexts.batch(record["held_out"])], [selection],
            metric=AnswerLogProb(), progress=False,
        )  # fmt: skip
        assert record["faithfulness"] == pytest.approx(score.faithfulness, rel=1e-5)
        scored += 1
    assert scored >= 1


def test_every_link_of_the_site_resolves(site):
    out, _, _ = site
    pages = site_pages(out)
    assert {p.relative_to(out).as_posix() for p in pages} >= {
        "index.html",
        *(f"clusters/{c}/{name}" for c in range(4) for name in ("index.html", "circuit.html")),
    }
    index_links = set(page_links(out / "index.html"))
    assert {f"clusters/{c}/index.html" for c in range(4)} <= index_links
    for page in pages:
        for target in page_links(page):
            assert (page.parent / target).resolve().is_file(), f"{page}: broken link {target}"
    circuit_page = (out / "clusters" / "0" / "circuit.html").read_text()
    assert 'src="../../plotly.min.js"' in circuit_page
    assert len(circuit_page) < 200_000, "plotly.js is shared, not inlined in every figure"


def test_cluster_page_highlights_answers_and_links_clusters_sharing_features(site):
    out, _, _ = site
    records = [
        json.loads((out / "clusters" / str(c) / "result.json").read_text()) for c in range(4)
    ]
    for record in records:
        page = (out / "clusters" / str(record["cluster"]) / "index.html").read_text()
        for context in record["contexts"]:
            assert f"<mark>{context['answer'].replace(chr(10), '↵')}</mark>" in page
        for feature in record["top_features"]:
            assert feature["node"] in page
        nodes = {f["node"] for f in record["top_features"]}
        sharing = {
            other["cluster"]
            for other in records
            if other is not record and nodes & {f["node"] for f in other["top_features"]}
        }
        linked = set(int(n) for n in re.findall(r'<a href="\.\./(\d+)/index.html">cluster', page))
        assert linked == sharing


def test_rerun_skips_every_finished_cluster_and_other_settings_are_refused(site, planted):
    out, _, config = site
    model, adapter, dictionaries = planted[:3]
    before = (out / "clusters" / "0" / "circuit.json").read_text()
    run = run_behaviours(
        model, adapter, dictionaries, out, config, settings={"model": "tiny"}, progress=False
    )
    assert run.computed == [] and sorted(run.skipped) == [0, 1, 2, 3]
    assert (out / "clusters" / "0" / "circuit.json").read_text() == before
    other = small_config(method="ig")
    other.corpus = config.corpus
    with pytest.raises(
        ValueError, match="settings.json: this folder holds a run with other settings"
    ):
        run_behaviours(
            model, adapter, dictionaries, out, other, settings={"model": "tiny"}, progress=False
        )


def test_plotly_js_option_shares_one_copy(site, tmp_path):
    out = site[0]
    graph = load_circuit(out / "clusters" / "0" / "circuit.json")
    inlined = to_html(graph, tmp_path / "inlined.html").read_text()
    shared = to_html(graph, tmp_path / "shared.html", plotly_js="lib/plotly.min.js").read_text()
    assert 'src="lib/plotly.min.js"' in shared and "lib/plotly.min.js" not in inlined
    assert len(inlined) - len(shared) > 1_000_000  # plotly.js itself


def chromium_console(page: Path) -> list[str]:
    """Console messages of a page loaded by headless Chromium (its own and its frames')."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", f"--user-data-dir={profile}",
                "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri(),
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")
def test_site_pages_have_no_console_errors_in_chromium(site, tmp_path):
    out = site[0]
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert any("undefinedFunction" in line for line in chromium_console(broken)), "check is blind"
    for page in [
        out / "index.html",
        out / "clusters" / "0" / "index.html",
        out / "clusters" / "1" / "circuit.html",
    ]:
        assert chromium_console(page) == [], page


# --------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The planted model, its dictionaries and corpus as files, for the command line."""
    root = tmp_path_factory.mktemp("saved")
    model, _ = planted_model()
    torch_module(model).save_pretrained(root / "model")
    model.tokenizer.save_pretrained(root / "model")
    for place, dictionary in planted_dictionaries().items():
        dictionary.save(root / "dicts" / place)
    (root / "planted.txt").write_text("\n\n".join(planted_corpus(documents_per_behaviour=8)[0]))
    return root


def cli_arguments(saved: Path, out: Path) -> list[str]:
    return [
        "behaviours", "--model", str(saved / "model"), "--dictionaries", str(saved / "dicts"),
        "--corpus", str(saved / "planted.txt"), "--contexts", "40", "--max-loss", "100",
        "--prefix-length", "6", "--describe", "activations", "--clusters", "4",
        "--examples", "8", "--node-threshold", "0.02", "--top-features", "3", "--out", str(out),
    ]  # fmt: skip


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
"""One thread in every process, so one process and two compute bit for bit the same."""


def run_cli(saved: Path, out: Path, *, launcher: list[str] | None = None, wait: bool = True):
    command = [*(launcher or [sys.executable]), "-m", "sparse_circuits", *cli_arguments(saved, out)]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE)
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def site_files(out: Path) -> dict[str, bytes]:
    """What a reader sees: every page, clusters.jsonl and every circuit (timings left out;
    the random id plotly gives each figure's element replaced)."""
    names = [*out.rglob("*.html"), out / "clusters.jsonl", *out.rglob("circuit.json")]
    return {p.relative_to(out).as_posix(): UUID.sub(b"ID", p.read_bytes()) for p in names}


@pytest.fixture(scope="module")
def straight(saved):
    out = saved / "straight"
    (summary,) = run_cli(saved, out)
    assert summary["clusters"] == 4 and summary["computed"] == 4
    return out


def test_resume_after_kill_completes_only_the_missing_clusters(saved, straight):
    out = saved / "killed"
    process = run_cli(saved, out, wait=False)
    results = lambda: sorted(out.glob("clusters/*/result.json"))  # noqa: E731
    deadline = time.time() + 300
    while time.time() < deadline and not results() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(results())
    assert 1 <= finished < 4, "the run was not killed part-way"
    assert not (out / "index.html").exists()
    (summary,) = run_cli(saved, out)
    assert summary["skipped"] == finished and summary["computed"] == 4 - finished
    assert site_files(out) == site_files(straight)


def test_two_processes_make_the_same_site_as_one(saved, straight):
    out = saved / "two"
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    summaries = run_cli(saved, out, launcher=launcher)
    assert sum(s["computed"] for s in summaries) == 4 and all(s["computed"] for s in summaries)
    assert sum(s["index"] is not None for s in summaries) == 1, "rank 0 alone writes the index"
    assert site_files(out) == site_files(straight)
