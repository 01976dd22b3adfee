"""The World English Bible as corpus documents, from Debian's ``sword-text-web``: one chapter a
document, its paragraphs and poetry lines kept, footnotes and Strong's-number markup dropped.

The package holds a SWORD ``zText`` module: for each testament (``ot``, ``nt``), ``.bzz`` is a
run of zlib-compressed blocks (one book each), ``.bzs`` the blocks' index (per block, three
little-endian uint32: offset, compressed size, uncompressed size). A book's text is OSIS XML
fragments in verse order, with ``<chapter sID=.../>`` and paragraph (``type="x-p"``) milestones.

Licence: the World English Bible is in the public domain.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError

__all__ = ["WEB_DIR", "sword_books", "osis_chapters", "bible_documents", "bible_from_root"]

WEB_DIR = Path("usr/share/sword/modules/texts/ztext/engWEB2015eb")
"""Where the package puts the module, below the unpacked root."""

_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_CHAPTER = re.compile(r"<chapter\b[^>]*\bsID=[^>]*>")
_BREAK = re.compile(r'<div\b[^>]*type="x-p"[^>]*/>|<lg\b[^>]*/>|</?title\b[^>]*>')
_LINE_END = re.compile(r"<l\b[^>]*\beID=[^>]*/>")
_TAG = re.compile(r"<[^>]*>")


def sword_books(folder: Path, testament: str) -> list[str]:
    """The decompressed blocks (one book each) of a testament of a zText module, in order."""
    index_path, text_path = folder / f"{testament}.bzs", folder / f"{testament}.bzz"
    try:
        index, data = index_path.read_bytes(), text_path.read_bytes()
        if len(index) % 12:
            raise CorpusError(f"{index_path}: {len(index)} bytes is not a whole number of entries")
        books = []
        for offset, size, _ in struct.iter_unpack("<III", index):
            books.append(zlib.decompress(data[offset : offset + size]).decode("utf-8"))
    except (OSError, zlib.error, UnicodeDecodeError) as error:
        raise CorpusError(f"{text_path}: not a readable SWORD zText module ({error})") from None
    return books


def _plain(osis: str) -> str:
    """OSIS fragments as text: paragraphs blank-line separated, poetry a line a line."""
    text = _LINE_END.sub("\n", _BREAK.sub("\n\n", _NOTE.sub("", osis)))
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def osis_chapters(book: str) -> list[str]:
    """A book's chapters as documents; the book's heading opens its first chapter, and a block
    without chapters (the translators' preface) is one document."""
    pieces = _CHAPTER.split(book)
    chapters = [_plain(piece) for piece in pieces]
    if len(chapters) > 1:
        chapters = [f"{chapters[0]}\n\n{chapters[1]}".strip(), *chapters[2:]]
    return [chapter for chapter in chapters if chapter]


def bible_documents(folder: str | Path) -> list[str]:
    """Every chapter of the module at ``folder``: Old Testament, then New."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder}: no SWORD module folder")
    return [
        chapter
        for t in ("ot", "nt")
        for book in sword_books(folder, t)
        for chapter in osis_chapters(book)
    ]


def bible_from_root(root: Path) -> list[str]:
    """The World English Bible of the package unpacked at ``root``."""
    return bible_documents(root / WEB_DIR)
