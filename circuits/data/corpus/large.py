"""The large corpus: the embedded corpus's sources and more everyday and technical English
from Debian's packages, deduplicated; for training dictionaries on more than two million tokens.

Sources, in the order their documents are joined (sizes after deduplication; the embedded
sources as in ``corpus.embedded``, less their duplicates):

- the four embedded sources (``fortunes``, ``austen``, ``pydoc``, ``docstrings``);
- ``bible``: ``sword-text-web`` (426.0-1), the World English Bible with the Deuterocanon, one
  chapter a document (``corpus.bible``). Licence: public domain.
- ``devil``: ``dict-devil`` (1.0-13.1), Ambrose Bierce's *The Devil's Dictionary* (1911), one
  entry a document (``corpus.dictd``). Licence: public domain.
- ``gcide``: ``dict-gcide`` (0.48.5+nmu2), the GNU Collaborative International Dictionary of
  English (Webster's 1913 and later additions): definitions with their literary quotations,
  one headword a document, pronunciations and etymologies dropped. Licence: GPL-2+ (as its
  Debian copyright file states).
- ``debian-handbook``: ``debian-handbook`` (11.20220922), *The Debian Administrator's
  Handbook*, English pages, one page a document (``corpus.manuals``). Licence: GPL-2+ or
  CC-BY-SA-3.0.
- ``debian-faq``: ``debian-faq`` (11.1), the Debian FAQ. Licence: Software in the Public
  Interest's permission to copy and modify with the notice kept.
- ``debian-reference``: ``debian-reference-en`` (2.100), the Debian Reference. Licence: GPL-2+.
- ``python-docs``: ``python3.X-doc`` for the running Python (3.11.2-6+deb12u9 here), the whole
  Python documentation (tutorial, library, language reference, HOWTOs, FAQs), prose only.
  Licence: PSF.
- ``postgresql-docs``: ``postgresql-doc-15`` (15.20-0+deb12u1), PostgreSQL's manual, prose
  only. Licence: the PostgreSQL licence (BSD-like).

| source           | documents |  characters | SmolLM2 tokens |
|------------------|----------:|------------:|---------------:|
| fortunes         |    15,081 |   2,504,857 |        676,305 |
| austen           |       269 |   4,020,688 |        926,535 |
| pydoc            |        67 |     364,488 |         88,880 |
| docstrings       |        97 |     569,963 |        152,459 |
| bible            |     1,432 |   4,932,416 |      1,210,947 |
| devil            |       997 |     352,528 |         88,690 |
| gcide            |   126,219 |  25,145,447 |      7,068,639 |
| debian-handbook  |       127 |     981,621 |        219,298 |
| debian-faq       |        16 |     142,479 |         33,627 |
| debian-reference |        14 |     301,202 |         77,355 |
| python-docs      |       493 |   7,483,467 |      1,795,919 |
| postgresql-docs  |     1,121 |   5,166,086 |      1,180,406 |
| total            |   145,933 |  51,965,242 |     13,519,060 |

Measured with Debian bookworm's packages and Python 3.11.7; tokens are the SmolLM2-135M
tokenizer's, without separators. Deduplication dropped 131 exact and 34 near duplicates of
146,098 documents (126 fortunes, 12 pydoc topics, 21 GCIDE entries, a few Bible chapters,
Devil's entries and PostgreSQL pages). The dictionary makes half the tokens: everyday words
defined in plain sentences, with quotations from English literature; the Bible and the
manuals are running prose. The first use fetches about 95 MB of packages and takes about a
minute; later reads take about five seconds (the source caches read, deduplicated, shuffled).

Debian packages looked at and left out: ``wordnet-base`` (glosses of 117,000 synsets, a
dictionary again, its definitions overlapping GCIDE's), ``emacs-common`` (its manuals are in
the non-free ``emacs-common-non-dfsg``; only the Emacs FAQ is free), ``bash-doc``,
``gnu-standards`` and ``gawk-doc`` (small, or not in bookworm), ``sword-text-kjv`` (a second
Bible), ``dict-jargon`` (hacker slang), and the R data packages (``r-cran-stringr`` holds a
few hundred sentences, ``r-cran-tidytext`` word lists).

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
from sparse_circuits.circuits.data.corpus.debian import debian_corpus_source
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
    return debian_corpus_source(
        manual.name,
        f"{description}, Debian {manual.package}",
        (manual.package,),
        partial(manual_documents, manual),
        version=manual.package,
    )


LARGE_SOURCES: tuple[CorpusSource, ...] = (
    *EMBEDDED_SOURCES,
    debian_corpus_source(
        "bible",
        "the World English Bible, Debian sword-text-web",
        ("sword-text-web",),
        bible_from_root,
    ),
    debian_corpus_source(
        "devil",
        "Bierce's The Devil's Dictionary, Debian dict-devil",
        ("dict-devil",),
        devil_from_root,
    ),
    debian_corpus_source(
        "gcide",
        "the GNU Collaborative International Dictionary of English, Debian dict-gcide",
        ("dict-gcide",),
        gcide_from_root,
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
