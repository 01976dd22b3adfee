"""Behaviours nobody wrote down: the unsupervised pipeline of Marks et al. (2024, section 5),
from a corpus to a browsable site of clusters and their circuits.

- ``contexts``: low-loss next-token contexts of a corpus;
- ``describe``: a vector per context (attribution, activations or gradients);
- ``clustering``: spectral clustering on the angular affinity (k-means for large N);
- ``cluster_circuit``: a circuit per cluster, its faithfulness, top features and summary;
- ``site``: the static site;
- ``pipeline``: the stages end to end, resumable per cluster and sharded over processes.
"""
