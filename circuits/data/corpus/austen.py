"""Jane Austen's six novels as corpus documents, from Debian's ``r-cran-janeaustenr``: one
chapter a document, hard-wrapped lines joined into paragraphs, read from the package's R
lazy-load database (``corpus.rdata``).

Licence: the novels (published 1811-1818) are in the public domain; the package is MIT.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError
from sparse_circuits.circuits.data.corpus.rdata import read_r_lazyload

__all__ = ["AUSTEN_DIR", "austen_documents", "austen_from_root"]

AUSTEN_DIR = Path("usr/lib/R/site-library/janeaustenr/data")
"""Where the package puts its R data, below the unpacked root."""


_CHAPTER = re.compile(r"^(CHAPTER|Chapter)\s+([IVXLC]+|\d+)\.?$")


def _unwrap(lines: Iterable[str]) -> str:
    """Hard-wrapped lines as paragraphs: lines joined by spaces, paragraphs by a blank line."""
    paragraphs, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)


def _chapters(lines: Sequence[str]) -> list[str]:
    """One document a chapter (its heading first); front matter and volume headings dropped."""
    chapters: list[list[str]] = []
    for line in lines:
        line = line or ""
        if _CHAPTER.match(line.strip()):
            chapters.append([line.strip(), ""])
        elif chapters and not re.match(r"^VOLUME [IVX]+$", line.strip()):
            chapters[-1].append(line)
    return [_unwrap(chapter) for chapter in chapters if _unwrap(chapter[2:])]


def austen_documents(folder: str | Path) -> list[str]:
    """Jane Austen's novels from janeaustenr's data folder: one chapter a document."""
    novels = read_r_lazyload(folder)
    documents = []
    for name in sorted(novels):
        lines = novels[name]
        if not isinstance(lines, list) or not all(isinstance(x, str | None) for x in lines):
            raise CorpusError(f"{folder}: {name} is not a character vector")
        documents.extend(_chapters(lines))
    return documents


def austen_from_root(root: Path) -> list[str]:
    """The novels of the package unpacked at ``root``."""
    return austen_documents(root / AUSTEN_DIR)
