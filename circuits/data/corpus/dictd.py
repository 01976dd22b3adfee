"""Dictionaries in dictd's format as corpus documents: Debian's ``dict-gcide`` (the GNU
Collaborative International Dictionary of English, Webster's 1913 and its additions) and
``dict-devil`` (Ambrose Bierce's *The Devil's Dictionary*, 1911): one entry a document.

A dictd dictionary is ``NAME.index`` (a line an entry: headword, then the entry's offset and
length in the text, both in dictd's base64 digits, tab separated) and ``NAME.dict.dz`` (the
text, gzip compressed). Entries several headwords point at are read once; the ``00-database``
entries (the dictionary's own header) are left out. GCIDE's markup is made plain: the
pronunciation between backslashes, the bracketed etymologies and source tags (``[1913
Webster]``) are dropped, the braces around cross-references removed.

Licence: GCIDE is GPL-2+ (its Debian copyright file); The Devil's Dictionary is in the public domain.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError

__all__ = [
    "DICTD_DIR",
    "dictd_entries",
    "plain_gcide",
    "unwrap_entry",
    "gcide_from_root",
    "devil_from_root",
]

DICTD_DIR = Path("usr/share/dictd")
"""Where the packages put the dictionaries, below the unpacked root."""
_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
"""dictd's base64 digits, most significant first."""


def _number(digits: str) -> int:
    value = 0
    for digit in digits:
        value = value * 64 + _DIGITS.index(digit)
    return value


def dictd_entries(folder: Path, name: str) -> list[str]:
    """The entries of the dictd dictionary ``name`` in ``folder``, in text order."""
    index_path, text_path = folder / f"{name}.index", folder / f"{name}.dict.dz"
    try:
        text = gzip.decompress(text_path.read_bytes())
        index = index_path.read_text(encoding="utf-8", errors="replace")
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise CorpusError(f"{text_path}: not a readable dictd dictionary ({error})") from None
    spans = set()
    for number, line in enumerate(index.splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 3 or not all(c in _DIGITS for c in fields[1] + fields[2]):
            raise CorpusError(f"{index_path}, line {number}: not a headword, offset and length")
        if not fields[0].startswith("00-database") and not fields[0].startswith("00database"):
            spans.add((_number(fields[1]), _number(fields[2])))
    entries = (text[start : start + length] for start, length in sorted(spans))
    return [entry.decode("utf-8", errors="replace") for entry in entries]


def unwrap_entry(entry: str, *, verse_indent: int | None = None) -> str:
    """An entry's blank-line separated paragraphs, their hard-wrapped lines joined; a paragraph
    whose lines are all indented by ``verse_indent`` spaces or more is verse, a line a line."""
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", entry):
        lines = [line for line in block.split("\n") if line.strip()]
        indents = [len(line) - len(line.lstrip(" ")) for line in lines]
        verse = verse_indent is not None and lines and min(indents) >= verse_indent
        if lines:
            paragraphs.append(("\n" if verse else " ").join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_BRACES = re.compile(r"[{}]")


def plain_gcide(entry: str) -> str:
    """A GCIDE entry without its pronunciations, etymologies, source tags and braces."""
    text = _PRONUNCIATION.sub("", entry)
    while _BRACKETED.search(text):  # etymologies hold bracketed tags of their own
        text = _BRACKETED.sub("", text)
    text = _BRACES.sub("", text)
    text = re.sub(r"(?<=\S)[ \t]+(?=[,.;:])", "", text)  # the blank a dropped piece leaves
    return unwrap_entry(re.sub(r"(?<=\S)[ \t]{2,}", " ", text))


def _dictionary(name: str, plain: Callable[[str], str]) -> Callable[[Path], list[str]]:
    def from_root(root: Path) -> list[str]:
        entries = (plain(entry) for entry in dictd_entries(root / DICTD_DIR, name))
        return [entry for entry in entries if entry]

    from_root.__doc__ = f"The {name} dictionary's entries, from the package unpacked at root."
    return from_root


gcide_from_root = _dictionary("gcide", plain_gcide)
devil_from_root = _dictionary("devil", partial(unwrap_entry, verse_indent=4))
