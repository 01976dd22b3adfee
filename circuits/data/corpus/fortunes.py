"""Fortune files as corpus documents: Debian's ``fortunes`` and ``fortunes-min``, never the
offensive ``fortunes-off``; one fortune a document, the ``ascii-art`` file left out.

Licence: Debian ships them under fortune-mod's BSD licence; the quotations themselves are of
mixed, mostly old or anonymous origin.
"""

from __future__ import annotations

from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError

__all__ = [
    "FORTUNE_DIR",
    "FORTUNE_SKIP",
    "parse_fortunes",
    "fortune_documents",
    "fortunes_from_root",
]

FORTUNE_DIR = Path("usr/share/games/fortunes")
"""Where the packages put the fortune files, below the unpacked root."""
FORTUNE_SKIP = frozenset({"ascii-art"})
"""Fortune files left out: pictures, not language."""


def parse_fortunes(text: str) -> list[str]:
    """The entries of a fortune file: separated by lines holding only ``%``."""
    entries, lines = [], []
    for line in [*text.replace("\r\n", "\n").split("\n"), "%"]:
        if line.strip() == "%":
            entry = "\n".join(lines).strip("\n")
            if entry.strip():
                entries.append(entry)
            lines = []
        else:
            lines.append(line.rstrip())
    return entries


def fortune_documents(folder: str | Path) -> list[str]:
    """Every fortune in a folder of fortune files, in file-name order.

    Skips the ``.dat`` index files, symbolic links (the ``.u8`` aliases), sub-folders and the
    files in ``FORTUNE_SKIP``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder}: no folder of fortune files")
    documents = []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file() or path.suffix == ".dat":
            continue
        if path.name in FORTUNE_SKIP:
            continue
        documents.extend(parse_fortunes(path.read_bytes().decode("utf-8", errors="replace")))
    return documents


def fortunes_from_root(root: Path) -> list[str]:
    """The fortunes of the packages unpacked at ``root``."""
    return fortune_documents(root / FORTUNE_DIR)
