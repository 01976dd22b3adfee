"""The large corpus: the embedded corpus's sources and more everyday and technical English
from Debian's packages, deduplicated; for training dictionaries on more than two million tokens.

TABLE

Every source is built and cached as the embedded ones are (``corpus.sources``: JSONL under
``cache_dir() / "corpus"``, Debian packages fetched with ``apt-get download`` and unpacked
with ``dpkg-deb -x``, never installed, into a temporary folder); one that cannot be had is
skipped with a warning. The documents of all sources, joined in the order above, are
deduplicated (``corpus.dedup``: exact and near duplicates, the first kept) and shuffled with
``random.Random(LARGE_SEED)``; each read reports the counts on stderr.
"""

from __future__ import annotations

import random
from functools import partial

from sparse_circuits.circuits.data.corpus.bible import bible_from_root
from sparse_circuits.circuits.data.corpus.common import announce
from sparse_circuits.circuits.data.corpus.debian import debian_source
from sparse_circuits.circuits.data.corpus.dedup import Deduplicated, deduplicate
from sparse_circuits.circuits.data.corpus.dictd import devil_from_root, gcide_from_root
from sparse_circuits.circuits.data.corpus.embedded import EMBEDDED_SOURCES
from sparse_circuits.circuits.data.corpus.manuals import MANUALS, HtmlManual, manual_documents
from sparse_circuits.circuits.data.corpus.sources import CorpusSource, source_documents

__all__ = [
    "LARGE",
    "LARGE_SEED",
    "LARGE_SOURCES",
    "large_sources",
    "large_corpus",
    "large_documents",
]

LARGE = "large"
"""The name ``read_documents`` takes for this corpus."""
LARGE_SEED = 0
"""Seed of the shuffle that mixes the large corpus's documents."""


def _manual_source(manual: HtmlManual, description: str) -> CorpusSource:
    return CorpusSource(
        name=manual.name,
        description=f"{description}, Debian {manual.package}",
        build=debian_source((manual.package,), partial(manual_documents, manual)),
        version=lambda: manual.package,
    )


LARGE_SOURCES: tuple[CorpusSource, ...] = (
    *EMBEDDED_SOURCES,
    CorpusSource(
        name="bible",
        description="the World English Bible, Debian sword-text-web",
        build=debian_source(("sword-text-web",), bible_from_root),
        version=lambda: "debian",
    ),
    CorpusSource(
        name="devil",
        description="Bierce's The Devil's Dictionary, Debian dict-devil",
        build=debian_source(("dict-devil",), devil_from_root),
        version=lambda: "debian",
    ),
    CorpusSource(
        name="gcide",
        description="the GNU Collaborative International Dictionary of English, Debian dict-gcide",
        build=debian_source(("dict-gcide",), gcide_from_root),
        version=lambda: "debian",
    ),
    _manual_source(MANUALS["debian-handbook"], "the Debian Administrator's Handbook"),
    _manual_source(MANUALS["debian-faq"], "the Debian FAQ"),
    _manual_source(MANUALS["debian-reference"], "the Debian Reference"),
    _manual_source(MANUALS["python-docs"], "Python's documentation"),
    _manual_source(MANUALS["postgresql-docs"], "PostgreSQL's documentation"),
)
"""The large corpus's sources, in the order their documents are joined before deduplication."""


def large_sources() -> dict[str, list[str]]:
    """Each available source's documents, before deduplication (cached after the first use)."""
    return source_documents(LARGE_SOURCES, LARGE)


def large_corpus() -> Deduplicated:
    """The large corpus's documents, deduplicated and shuffled, with the duplicate counts."""
    documents = [doc for docs in large_sources().values() for doc in docs]
    unique = deduplicate(documents)
    random.Random(LARGE_SEED).shuffle(unique.documents)
    announce(
        f"large corpus: {len(unique.documents)} documents; dropped {unique.exact} exact and "
        f"{unique.near} near duplicates"
    )
    return unique


def large_documents() -> list[str]:
    """The large corpus: every source's documents, deduplicated, mixed by a fixed-seed shuffle."""
    return large_corpus().documents
