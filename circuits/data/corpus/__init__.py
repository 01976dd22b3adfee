"""The text corpora dictionaries are trained on, and their cutting into fixed-length contexts.

``reader``: ``read_documents`` (the embedded corpus, a text or JSONL file, a hub dataset) and
``tokenize_contexts``; ``text_files``: the plain-text and JSONL formats; ``embedded``: the
embedded corpus, its sources, cache and licences, built from ``fortunes`` and ``austen`` (Debian
packages fetched by ``debian``, Austen's novels read by the R unserializer of ``rdata``) and
``python_docs`` (the running Python's documentation); ``large``: the large corpus, the embedded
sources and more from Debian (``bible``, ``dictd``, ``manuals`` read with ``html_text``),
deduplicated by ``dedup``; ``sources``: building and caching a corpus's sources; ``split``: the
held-out split of documents; ``common``: ``CorpusError``.
"""

from sparse_circuits.circuits.data.corpus.austen import austen_documents
from sparse_circuits.circuits.data.corpus.common import CorpusError
from sparse_circuits.circuits.data.corpus.debian import fetch_debian_packages
from sparse_circuits.circuits.data.corpus.dedup import Deduplicated, deduplicate
from sparse_circuits.circuits.data.corpus.embedded import (
    EMBEDDED,
    EMBEDDED_SEED,
    EMBEDDED_SOURCES,
    embedded_documents,
    embedded_sources,
)
from sparse_circuits.circuits.data.corpus.fortunes import fortune_documents, parse_fortunes
from sparse_circuits.circuits.data.corpus.large import (
    LARGE,
    LARGE_SOURCES,
    large_corpus,
    large_documents,
    large_sources,
)
from sparse_circuits.circuits.data.corpus.python_docs import (
    STDLIB_MODULES,
    pydoc_topic_documents,
    stdlib_docstring_documents,
)
from sparse_circuits.circuits.data.corpus.rdata import read_r_lazyload
from sparse_circuits.circuits.data.corpus.reader import (
    open_hub_dataset,
    read_documents,
    tokenize_contexts,
)
from sparse_circuits.circuits.data.corpus.split import DocumentSplit, split_documents

__all__ = [
    "CorpusError",
    "read_documents",
    "open_hub_dataset",
    "tokenize_contexts",
    "embedded_documents",
    "embedded_sources",
    "parse_fortunes",
    "fortune_documents",
    "austen_documents",
    "read_r_lazyload",
    "fetch_debian_packages",
    "pydoc_topic_documents",
    "stdlib_docstring_documents",
    "EMBEDDED",
    "EMBEDDED_SOURCES",
    "EMBEDDED_SEED",
    "STDLIB_MODULES",
    "LARGE",
    "LARGE_SOURCES",
    "large_sources",
    "large_corpus",
    "large_documents",
    "Deduplicated",
    "deduplicate",
    "DocumentSplit",
    "split_documents",
]
