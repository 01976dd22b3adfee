"""Deduplication of corpus documents across sources.

1. Normalise: case folded, runs of whitespace made one space (``normalise``).
2. Exact duplicates: a document whose normalised text was kept before is dropped.
3. Near duplicates: a document is cut into paragraphs (blank-line separated); one whose
   distinctive paragraphs (``MIN_PARAGRAPH_CHARACTERS`` or longer once normalised) were, for
   ``NEAR_SHARE`` of their characters or more, already seen in the documents kept before is
   dropped: the same section shipped by two packages, a page that only repeats another.

Documents are taken in the order given; the first of a group of duplicates is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "MIN_PARAGRAPH_CHARACTERS",
    "NEAR_SHARE",
    "Deduplicated",
    "normalise",
    "paragraph_texts",
    "paragraphs",
    "text_key",
    "deduplicate",
]

MIN_PARAGRAPH_CHARACTERS = 80
"""Shorter paragraphs (headings, "Notes", a formula verse) recur in distinct documents: they
never make a document a near duplicate."""
NEAR_SHARE = 0.5
"""A document with this share of its distinctive paragraphs' characters already seen is a near
duplicate."""


@dataclass(frozen=True)
class Deduplicated:
    """The documents kept, and how many were dropped as exact and as near duplicates."""

    documents: list[str]
    """The documents kept, in their order."""
    exact: int
    """Documents dropped whose normalised text equals a kept one's."""
    near: int
    """Documents dropped whose distinctive paragraphs were mostly seen before."""


def normalise(text: str) -> str:
    """``text`` case folded, its whitespace runs made single spaces, stripped."""
    return " ".join(text.casefold().split())


def paragraph_texts(text: str) -> list[str]:
    """The paragraphs of a document (blank-line separated) as they are, stripped; empty ones
    left out."""
    return [piece.strip() for piece in re.split(r"\n[ \t\r\f\v]*\n", text) if piece.strip()]


def paragraphs(text: str) -> list[str]:
    """The normalised paragraphs of a document."""
    return [normalise(piece) for piece in paragraph_texts(text)]


def text_key(normalised: str) -> bytes:
    """A 16-byte hash of a normalised text: what duplicates share."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=16).digest()


def _seen_share(pieces: Iterable[str], seen: set[bytes]) -> float | None:
    """The share of the distinctive pieces' characters whose key is in ``seen``."""
    total = repeated = 0
    for piece in pieces:
        if len(piece) >= MIN_PARAGRAPH_CHARACTERS:
            total += len(piece)
            repeated += len(piece) * (text_key(piece) in seen)
    return repeated / total if total else None


def deduplicate(documents: Sequence[str]) -> Deduplicated:
    """``documents`` without exact and near duplicates (see the module's steps)."""
    kept: list[str] = []
    texts: set[bytes] = set()
    seen_paragraphs: set[bytes] = set()
    exact = near = 0
    for document in documents:
        key = text_key(normalise(document))
        if key in texts:
            exact += 1
            continue
        pieces = paragraphs(document)
        share = _seen_share(pieces, seen_paragraphs)
        if share is not None and share >= NEAR_SHARE:
            near += 1
            continue
        texts.add(key)
        seen_paragraphs.update(text_key(p) for p in pieces if len(p) >= MIN_PARAGRAPH_CHARACTERS)
        kept.append(document)
    return Deduplicated(kept, exact=exact, near=near)
