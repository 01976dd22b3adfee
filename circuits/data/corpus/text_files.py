"""The two corpus file formats: plain text, documents separated by one or more blank lines, and
JSONL, one JSON object a line, its ``text`` field a document. Documents that are empty or only
whitespace are dropped; a file left with none is a ``CorpusError`` naming it."""

from __future__ import annotations

import re
from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError
from sparse_circuits.files import jsonl_strings, read_utf8

__all__ = ["read_plain_documents", "read_jsonl_documents"]


def _nonempty(documents: list[str], path: Path) -> list[str]:
    if not documents:
        raise CorpusError(f"{path}: empty corpus (no document with text)")
    return documents


def read_plain_documents(path: Path) -> list[str]:
    """The documents of a plain-text file, each stripped of surrounding whitespace."""
    text = read_utf8(path, CorpusError)
    pieces = re.split(r"\n[ \t\f\v\r]*\n", text)
    return _nonempty([piece.strip() for piece in pieces if piece.strip()], path)


def read_jsonl_documents(path: Path) -> list[str]:
    """The ``text`` fields of a JSONL file, as they are."""
    texts = (text for _, text in jsonl_strings(path, ("text",), CorpusError, what="corpus"))
    return _nonempty([text for text in texts if text.strip()], path)
