"""The ``sparse-circuits`` command line: a thin layer over ``circuits``, ``dictionaries`` and
``editing``."""
