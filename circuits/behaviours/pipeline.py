"""The unsupervised pipeline from a corpus to a browsable site, resumable and sharded over
processes (Marks et al. 2024, section 5).

Each stage writes its result into the output folder atomically, and a rerun reads what is
there instead of computing it again:

1. ``contexts.safetensors``: low-loss next-token contexts of the corpus (``contexts``).
2. ``vectors.npz``: a vector per context, sparse (``describe``).
3. ``clustering.json``: each context's cluster, and the sweep of cluster counts
   (``clustering``).
4. ``clusters/<id>/``: each cluster's ``circuit.json``, its figure ``circuit.html`` and
   ``result.json``, written last: a cluster is done when its ``result.json`` exists, so a run
   killed at any point (even ``kill -9``) redoes at most the clusters it was working on
   (``cluster_circuit``).
5. The site (``site``): the cluster pages, ``index.html``, ``clusters.jsonl``.

Under ``torchrun`` (``sparse_circuits.distributed``), rank 0 runs stages 1-3 while the other
ranks wait for ``clustering.json``; every rank then takes its share of the clusters (largest
first, each to the rank with the least work so far), and rank 0 writes the site once every
cluster's ``result.json`` exists. Ranks wait by watching files, not in a collective, so a long
stage never runs into a collective's timeout. ``settings.json`` records what the run was
asked; a rerun with other settings into the same folder is refused.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
from tqdm.auto import tqdm

from sparse_circuits.circuits.behaviours.cluster_circuit import (
    ClusterCircuit,
    ClusterCircuitConfig,
    cluster_circuit,
)
from sparse_circuits.circuits.behaviours.clustering import ClusterConfig, cluster_vectors
from sparse_circuits.circuits.behaviours.contexts import ContextConfig, Contexts, find_contexts
from sparse_circuits.circuits.behaviours.describe import (
    DESCRIPTIONS,
    Description,
    describe_contexts,
)
from sparse_circuits.circuits.behaviours.site import PLOTLY_JS, cluster_folder, write_site
from sparse_circuits.circuits.data.corpus import read_documents
from sparse_circuits.circuits.discovery.discover import CircuitFiles
from sparse_circuits.circuits.model.adapters import ModelAdapter
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.distributed import rank_and_world
from sparse_circuits.errors import ConfigError
from sparse_circuits.files import atomic_path, write_text_atomic

__all__ = ["BehavioursConfig", "BehavioursRun", "run_behaviours", "shard_clusters"]

RESULT = "result.json"


@dataclass
class BehavioursConfig:
    """Every stage's settings (``run_behaviours``)."""

    contexts: ContextConfig = field(default_factory=ContextConfig)
    """Which contexts of the corpus are kept."""
    describe: Description = "attribution"
    """How contexts are described for clustering (``describe_contexts``)."""
    clustering: ClusterConfig = field(default_factory=ClusterConfig)
    """How the context vectors are clustered."""
    circuits: ClusterCircuitConfig = field(default_factory=ClusterCircuitConfig)
    """How each cluster's circuit is found, scored and shown."""
    corpus: str = "embedded"
    """``embedded``, a ``.txt`` or a ``.jsonl`` file (``read_documents``)."""
    describe_batch_size: int = 16
    """Contexts per forward and backward pass when describing them."""
    label_windows: int = 256
    """Contexts scanned for each top feature's top activating contexts (the first found)."""
    poll_seconds: float = 1.0
    """How often a waiting rank looks for the files it waits for."""

    def __post_init__(self) -> None:
        if self.describe not in DESCRIPTIONS:
            choices = ", ".join(DESCRIPTIONS)
            raise ConfigError(f"describe must be one of {choices}, got {self.describe!r}")
        if self.describe_batch_size < 1:
            raise ConfigError(
                f"describe_batch_size must be at least 1, got {self.describe_batch_size}"
            )
        if self.label_windows < 0:
            raise ConfigError(f"label_windows must be >= 0, got {self.label_windows}")
        if not self.poll_seconds > 0:
            raise ConfigError(f"poll_seconds must be positive, got {self.poll_seconds}")


@dataclass
class BehavioursRun:
    out: Path
    n_contexts: int
    n_clusters: int
    computed: list[int]
    """Clusters this process computed now."""
    skipped: list[int]
    """Clusters of this process that an earlier run had finished."""
    seconds: dict[str, float]
    """Wall time of each stage in this process."""
    index: Path | None
    """``index.html`` (rank 0 only)."""


def shard_clusters(sizes: list[int], world: int, *, examples: int) -> list[list[int]]:
    """Each rank's clusters: largest first, each to the rank with the least work so far
    (work ~ the contexts a circuit runs on, ``min(size, examples)``); ties to the lower rank."""
    loads, shares = [0] * world, [[] for _ in range(world)]
    for cluster in sorted(range(len(sizes)), key=lambda c: (-sizes[c], c)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        loads[rank] += min(sizes[cluster], examples)
        shares[rank].append(cluster)
    return shares


def _wait_for(paths: list[Path], what: str, poll: float) -> None:
    """Return once every one of ``paths`` exists, saying once on stderr what it waits for."""
    said = False
    while not all(path.is_file() for path in paths):
        if not said:
            print(f"sparse-circuits: waiting for {what} ...", file=sys.stderr, flush=True)
            said = True
        time.sleep(poll)


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / "settings.json"
    text = json.dumps(settings, indent=1, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() != text:
        raise ValueError(
            f"{path}: this folder holds a run with other settings; choose another --out"
        )
    write_text_atomic(path, text)


def _contexts_stage(model, adapter, out: Path, config: BehavioursConfig, progress) -> Contexts:
    path = out / "contexts.safetensors"
    if path.is_file():
        return Contexts.load(path)
    documents = read_documents(config.corpus)
    contexts = find_contexts(model, adapter, documents, config.contexts, progress=progress)
    contexts.save(path)
    return contexts


def _vectors_stage(model, adapter, dictionaries, contexts, out: Path, config, progress):
    path = out / "vectors.npz"
    if path.is_file():
        return scipy.sparse.load_npz(path)
    vectors = describe_contexts(
        model, adapter, dictionaries, contexts, config.describe,
        batch_size=config.describe_batch_size, progress=progress,
    ).matrix  # fmt: skip
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        scipy.sparse.save_npz(file, vectors)
    return vectors


def _clustering_stage(vectors, out: Path, config: BehavioursConfig) -> None:
    path = out / "clustering.json"
    if path.is_file():
        return
    clustering = cluster_vectors(vectors, config.clustering)
    document = {
        "describe": config.describe,
        "algorithm": clustering.algorithm,
        "n_clusters": clustering.n_clusters,
        "sweep": clustering.sweep,
        "labels": clustering.labels.tolist(),
    }
    write_text_atomic(path, json.dumps(document))


def cluster_record(
    tokenizer: Any, contexts: Contexts, cluster: int, members: list[int], result: ClusterCircuit
) -> dict[str, Any]:
    """What ``result.json`` holds of a cluster: the line of ``clusters.jsonl`` and what its
    page shows."""
    graph = result.graph
    return {
        "cluster": cluster,
        "size": len(members),
        "summary": result.summary,
        "faithfulness": result.faithfulness,
        "contexts": [contexts.record(tokenizer, i) for i in members],
        "nodes": graph.number_of_nodes() - 1,
        "edges": graph.number_of_edges(),
        "discovery": result.discovery,
        "held_out": result.held_out,
        "top_features": result.top_features,
    }


def _circuit_stage(
    model, adapter, dictionaries, contexts, labels, mine, out, config, settings, progress
) -> tuple[list[int], list[int]]:
    computed, skipped = [], []
    windows_NT = contexts.ids_NT[: config.label_windows]
    for cluster in tqdm(mine, desc="cluster circuits", disable=not progress, file=sys.stderr):
        folder = cluster_folder(out, cluster)
        if (folder / RESULT).is_file():
            skipped.append(cluster)
            continue
        started = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        members = np.flatnonzero(labels == cluster).tolist()
        result = cluster_circuit(
            model, adapter, dictionaries, contexts, members, config.circuits,
            cluster=cluster, label_windows_NT=windows_NT, settings=settings,
        )  # fmt: skip
        files = CircuitFiles(folder / "circuit.json", html=folder / "circuit.html")
        figure = {
            "title": f"cluster {cluster}: {result.summary}",
            "plotly_js": f"../../{PLOTLY_JS}",
        }
        files.write(result.graph, options={"html": figure})
        record = cluster_record(model.tokenizer, contexts, cluster, members, result)
        record["seconds"] = time.perf_counter() - started
        write_text_atomic(folder / RESULT, json.dumps(record, ensure_ascii=False, indent=1))
        computed.append(cluster)
    return computed, skipped


def run_behaviours(
    model: Any,
    adapter: ModelAdapter,
    dictionaries: Mapping[str, Dictionary],
    out: str | Path,
    config: BehavioursConfig,
    *,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
) -> BehavioursRun:
    """Run (or finish) the pipeline into ``out`` (steps in the module's docstring).
    ``settings`` (model and dictionary names, say) are recorded with the run and in every
    circuit."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    settings = {**(settings or {}), "places": list(dictionaries)}
    _check_settings(out, {**settings, "config": asdict(config)})
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    if rank == 0:
        contexts = _contexts_stage(model, adapter, out, config, progress)
        lap("contexts")
        vectors = _vectors_stage(model, adapter, dictionaries, contexts, out, config, progress)
        lap("describe")
        _clustering_stage(vectors, out, config)
        lap("clustering")
    else:
        _wait_for([out / "clustering.json"], "rank 0's clustering", config.poll_seconds)
        contexts = Contexts.load(out / "contexts.safetensors")
        lap("waiting")
    clustering = json.loads((out / "clustering.json").read_text())
    labels = np.asarray(clustering["labels"])
    n_clusters = int(clustering["n_clusters"])
    sizes = [int((labels == c).sum()) for c in range(n_clusters)]
    mine = shard_clusters(sizes, world, examples=config.circuits.examples)[rank]
    computed, skipped = _circuit_stage(
        model, adapter, dictionaries, contexts, labels, mine, out, config, settings, progress
    )
    lap("circuits")
    index = None
    if rank == 0:
        results = [cluster_folder(out, c) / RESULT for c in range(n_clusters)]
        _wait_for(results, "the other ranks' clusters", config.poll_seconds)
        lap("waiting for ranks")
        records = [json.loads(path.read_text()) for path in results]
        run = {
            "model": settings.get("model", "?"),
            "places": ", ".join(settings["places"]),
            "contexts": len(contexts),
            "describe": config.describe,
            "clustering": f"{clustering['algorithm']}, {n_clusters} clusters",
            "method": config.circuits.discover.attribution.method,
        }
        index = write_site(out, records, run=run)
        lap("site")
        circuit_seconds = [r["seconds"] for r in records]
        timing = {
            "stages": seconds,
            "ranks": world,
            "clusters": n_clusters,
            "seconds_per_circuit": float(np.mean(circuit_seconds)),
            "sweep": clustering["sweep"],
        }
        write_text_atomic(out / "run.json", json.dumps(timing, indent=1))
    return BehavioursRun(out, len(contexts), n_clusters, computed, skipped, seconds, index)
