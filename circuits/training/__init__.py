"""Dictionaries on a model: training on its activations over a corpus (``train``) and
evaluating a dictionary spliced into it (``evaluation``: fidelity and downstream loss). The
model-free parts live in ``sparse_circuits.dictionaries``."""
