"""Cluster context vectors into behaviours (Marks et al. 2024, section 5).

1. Contexts whose vector is zero (nothing active, no gradient) cannot be compared: label -1.
2. Normalise the other vectors; cosine similarities ``S = X X^T``.
3. Angular affinity ``A = 1 - arccos(S) / pi``, in [0, 1] with 1 on the diagonal (the paper's
   affinity).
4. Spectral clustering on ``A`` (scikit-learn, precomputed affinity; the paper's method), or
   k-means on the normalised vectors, the fast option for large N (no N x N matrix).
5. With several cluster counts (a sweep), each clustering is scored by its silhouette under
   the angular distance ``1 - A`` (on a seeded sample of at most ``silhouette_sample``
   contexts) and the best is kept.
6. Clusters are numbered by size, largest first (ties by first member).

``purity`` scores a clustering against known behaviours (planted ones, in tests).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import numpy as np
import scipy.sparse

from sparse_circuits.errors import ConfigError

__all__ = [
    "ClusterConfig",
    "ClusterMethod",
    "Clustering",
    "Purity",
    "angular_affinity",
    "cluster_vectors",
    "purity",
    "sweep_sizes",
]

ClusterMethod = Literal["auto", "spectral", "kmeans"]


@dataclass
class ClusterConfig:
    """How ``cluster_vectors`` clusters the context vectors."""

    clusters: tuple[int, ...] = ()
    """Cluster counts to try, the best silhouette kept; empty: ``sweep_sizes``."""
    algorithm: ClusterMethod = "auto"
    """``spectral`` (the paper's), ``kmeans`` (large N), or ``auto``: spectral up to
    ``spectral_max`` contexts, k-means beyond."""
    spectral_max: int = 5000
    """``auto`` uses spectral clustering up to this many contexts (its affinity matrix holds
    N^2 float64 numbers: 200 MB at 5000)."""
    silhouette_sample: int = 2000
    """Contexts the silhouette of a sweep is computed on."""
    seed: int = 0
    """Seed of spectral clustering's and k-means' initialisation and of the silhouette's
    sample."""

    def __post_init__(self) -> None:
        self.clusters = tuple(int(k) for k in self.clusters)
        if any(k < 1 for k in self.clusters):
            raise ConfigError(f"clusters must be at least 1, got {list(self.clusters)}")
        if self.algorithm not in get_args(ClusterMethod):
            choices = ", ".join(get_args(ClusterMethod))
            raise ConfigError(f"algorithm must be one of {choices}, got {self.algorithm!r}")
        for name in ("spectral_max", "silhouette_sample"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name} must be at least 2, got {getattr(self, name)}")


class Clustering(NamedTuple):
    labels: np.ndarray
    """``(N,)`` cluster of each context, -1 for a context that was not clustered."""
    n_clusters: int
    algorithm: str
    """The algorithm used (``spectral`` or ``kmeans``)."""
    sweep: list[dict[str, float]]
    """``{"clusters", "silhouette"}`` of each count tried (one entry without a sweep)."""


class Purity(NamedTuple):
    overall: float
    """Share of contexts in the majority behaviour of their cluster."""
    per_behaviour: dict[str, dict[str, float]]
    """For each behaviour: ``cluster`` holding most of its contexts, the share of its contexts
    there (``recall``) and that cluster's purity (``purity``: the behaviour's share of it)."""


def sweep_sizes(n: int) -> tuple[int, ...]:
    """Cluster counts of the default sweep for ``n`` contexts: mean cluster sizes of 80, 40, 20
    and 10 contexts (each count at least 2 and below ``n``)."""
    return tuple(sorted({min(max(2, round(n / size)), max(1, n - 1)) for size in (80, 40, 20, 10)}))


def _normalised(vectors: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    return scipy.sparse.diags(1.0 / norms) @ vectors


def angular_affinity(vectors: scipy.sparse.csr_matrix | np.ndarray) -> np.ndarray:
    """``(N, N)`` affinity ``1 - arccos(cos) / pi`` of nonzero vectors ``(N, columns)``."""
    unit = _normalised(scipy.sparse.csr_matrix(vectors, dtype=np.float64))
    cosine = np.clip((unit @ unit.T).toarray(), -1.0, 1.0)
    return 1.0 - np.arccos(cosine) / np.pi


def _cluster_once(unit, k: int, algorithm: str, seed: int, affinity) -> np.ndarray:
    from sklearn.cluster import KMeans, SpectralClustering

    if algorithm == "spectral":
        model = SpectralClustering(
            n_clusters=k, affinity="precomputed", assign_labels="cluster_qr", random_state=seed
        )
        return model.fit_predict(affinity)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(unit)


def _silhouette(unit, labels: np.ndarray, sample: int, seed: int) -> float:
    from sklearn.metrics import silhouette_score

    if len(set(labels.tolist())) < 2:
        return float("nan")
    rows = np.arange(unit.shape[0])
    if len(rows) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(rows, sample, replace=False))
    distance = 1.0 - angular_affinity(unit[rows])
    np.fill_diagonal(distance, 0.0)
    if len(set(labels[rows].tolist())) < 2:
        return float("nan")
    return float(silhouette_score(distance, labels[rows], metric="precomputed"))


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered by cluster size, largest first (ties: the earlier first member)."""
    counts = Counter(labels.tolist())
    first = {label: index for index, label in reversed(list(enumerate(labels.tolist())))}
    order = sorted(counts, key=lambda label: (-counts[label], first[label]))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping[label] for label in labels.tolist()], dtype=np.int64)


def cluster_vectors(vectors: scipy.sparse.csr_matrix, config: ClusterConfig) -> Clustering:
    """Cluster the rows of ``vectors`` (steps in the module's docstring)."""
    vectors = scipy.sparse.csr_matrix(vectors, dtype=np.float64)
    nonzero = np.flatnonzero(vectors.getnnz(axis=1) > 0)
    labels = np.full(vectors.shape[0], -1, dtype=np.int64)
    if len(nonzero) == 0:
        raise ValueError("every context's vector is zero: nothing to cluster")
    unit = _normalised(vectors[nonzero])
    counts = config.clusters or sweep_sizes(len(nonzero))
    counts = tuple(sorted({min(k, len(nonzero)) for k in counts}))
    algorithm = config.algorithm
    if algorithm == "auto":
        algorithm = "spectral" if len(nonzero) <= config.spectral_max else "kmeans"
    affinity = angular_affinity(unit) if algorithm == "spectral" else None
    sweep, best, best_score = [], None, -np.inf
    for k in counts:
        found = _cluster_once(unit, k, algorithm, config.seed, affinity)
        score = _silhouette(unit, found, config.silhouette_sample, config.seed)
        sweep.append({"clusters": k, "silhouette": score})
        if best is None or (score > best_score):
            best, best_score = found, score
    labels[nonzero] = _by_size(best)
    return Clustering(labels, int(labels.max()) + 1, algorithm, sweep)


def purity(labels: Sequence[int], behaviours: Sequence[str]) -> Purity:
    """How well clusters ``labels`` match known ``behaviours`` (contexts labelled -1 are left
    out)."""
    pairs = [(int(c), b) for c, b in zip(labels, behaviours, strict=True) if int(c) >= 0]
    if not pairs:
        raise ValueError("no clustered context to score")
    by_cluster: dict[int, Counter] = {}
    for cluster, behaviour in pairs:
        by_cluster.setdefault(cluster, Counter())[behaviour] += 1
    overall = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / len(pairs)
    per_behaviour = {}
    for behaviour in sorted({b for _, b in pairs}):
        home = max(by_cluster, key=lambda c: (by_cluster[c][behaviour], -c))
        total = sum(1 for _, b in pairs if b == behaviour)
        per_behaviour[behaviour] = {
            "cluster": home,
            "recall": by_cluster[home][behaviour] / total,
            "purity": by_cluster[home][behaviour] / sum(by_cluster[home].values()),
        }
    return Purity(overall, per_behaviour)
