"""The embedded corpus: real English built on this machine, the default corpus.

No third-party text is kept in this repository. Each source is read at run time from what the
machine has or can install from a package registry; its documents are cached as JSONL under
``cache_dir() / "corpus"`` (``$SPARSE_CIRCUITS_CACHE``, default ``~/.cache/sparse-circuits``),
so only the first use fetches anything (a cached source is kept until the folder is deleted;
the Python sources are cached per Python version). Debian packages are fetched with ``apt-get download`` into
a temporary folder and unpacked with ``dpkg-deb -x``, never installed (``apt-get update`` runs
only when the download fails for want of a package list). A Debian source that cannot be had (no
``apt-get``/``dpkg-deb``, no registry) is skipped with a warning; the Python sources always exist.

Sources, in the order their documents are joined before the shuffle:

- ``fortunes``: Debian's ``fortunes`` and ``fortunes-min`` (1:1.99.1-7.3), never the offensive
  ``fortunes-off``: quotations, jokes, anecdotes, poems and definitions about people, work,
  love, politics, science; one fortune a document (the ``ascii-art`` file is left out). Licence:
  Debian ships them under fortune-mod's BSD licence; the quotations themselves are of mixed,
  mostly old or anonymous origin.
- ``austen``: Debian's ``r-cran-janeaustenr`` (1.0.0-1): Jane Austen's six novels (Emma,
  Mansfield Park, Northanger Abbey, Persuasion, Pride and Prejudice, Sense and Sensibility), one
  chapter a document, hard-wrapped lines joined into paragraphs. Licence: the novels (published
  1811-1818) are in the public domain; the package is MIT. Read from the package's R lazy-load
  database with the small R unserializer of ``corpus.rdata``.
- ``pydoc``: ``pydoc_data.topics.topics`` of the running Python, the language reference's
  topics, one a document. Licence: PSF.
- ``docstrings``: the docstrings of the 97 modules in ``STDLIB_MODULES``, one document a module
  (its docstring, then those of its public classes, functions and methods). Licence: PSF.

| source     | documents | characters | SmolLM2 tokens |
|------------|----------:|-----------:|---------------:|
| fortunes   |    15,207 |  2,525,106 |        681,619 |
| austen     |       269 |  4,020,688 |        926,535 |
| pydoc      |        79 |    464,891 |        112,951 |
| docstrings |        97 |    569,209 |        152,297 |
| total      |    15,652 |  7,579,894 |      1,873,402 |

Sizes measured with Debian bookworm's packages and Python 3.11.7 (the Python sources change
with the Python version); tokens are the SmolLM2-135M tokenizer's, without separators. Austen
and the fortunes give everyday language about people, places and events (he/she/they,
singular/plural, roles); the Python sources add technical English. The corpus is deterministic:
files are read in sorted order, sources in the order above, and the documents then shuffled with
``random.Random(EMBEDDED_SEED)``. The first use takes a few seconds (two small downloads);
later ones read the cache in well under a second, and ``tokenize_contexts`` cuts the whole
corpus in about five seconds with SmolLM2's fast tokenizer.

Other Debian packages looked at and left out: ``bible-kjv-text`` (the King James Bible, public
domain, but in its own compressed format that needs the ``bible-kjv`` program), ``sword-text-web``
(the World English Bible, public domain, but 22 MB of OSIS markup), ``fortune-anarchism`` and
``tfortunes`` (small, narrow), ``jargon-text`` (hacker slang), and the non-English fortunes-*.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from sparse_circuits.circuits.data.corpus.austen import austen_from_root
from sparse_circuits.circuits.data.corpus.common import announce
from sparse_circuits.circuits.data.corpus.debian import debian_corpus_source
from sparse_circuits.circuits.data.corpus.fortunes import fortunes_from_root
from sparse_circuits.circuits.data.corpus.python_docs import (
    pydoc_topic_documents,
    python_version,
    stdlib_docstring_documents,
)
from sparse_circuits.circuits.data.corpus.sources import CorpusSource, source_documents

__all__ = [
    "EMBEDDED",
    "EMBEDDED_SEED",
    "EMBEDDED_SOURCES",
    "embedded_sources",
    "embedded_documents",
]

EMBEDDED = "embedded"
"""The name ``read_documents`` takes for this corpus."""
EMBEDDED_SEED = 0
"""Seed of the shuffle that mixes the embedded sources' documents."""


def embedded_sources() -> dict[str, list[str]]:
    """Each available embedded source's documents, in file order (cached after the first use)."""
    return source_documents(EMBEDDED_SOURCES, EMBEDDED)


def embedded_documents() -> list[str]:
    """The embedded corpus: every source's documents, mixed by a fixed-seed shuffle."""
    documents = [doc for docs in embedded_sources().values() for doc in docs]
    random.Random(EMBEDDED_SEED).shuffle(documents)
    return documents


def _collect_python(build: Callable[[], list[str]], what: str) -> Callable[[], list[str]]:
    def run() -> list[str]:
        announce(f"collecting {what} ...")
        return build()

    return run


EMBEDDED_SOURCES: tuple[CorpusSource, ...] = (
    debian_corpus_source(
        "fortunes",
        "Debian fortunes and fortunes-min",
        ("fortunes-min", "fortunes"),
        fortunes_from_root,
    ),
    debian_corpus_source(
        "austen",
        "Jane Austen's novels, Debian r-cran-janeaustenr",
        ("r-cran-janeaustenr",),
        austen_from_root,
    ),
    CorpusSource(
        name="pydoc",
        description="Python's pydoc topics",
        build=_collect_python(pydoc_topic_documents, "Python's pydoc topics"),
        version=python_version,
    ),
    CorpusSource(
        name="docstrings",
        description="docstrings of standard-library modules",
        build=_collect_python(stdlib_docstring_documents, "standard-library docstrings"),
        version=python_version,
    ),
)
"""The embedded corpus's sources, in the order their documents are joined before the shuffle."""
