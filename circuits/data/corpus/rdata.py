"""A small reader of R's lazy-load databases (``name.rdx`` index + ``name.rdb`` objects), as an
R package's ``data/`` folder holds its data sets.

Enough of R's XDR serialization (versions 2 and 3) for data objects: NULL, symbols, pairlists,
strings, logical, integer, double and character vectors, lists (named lists as dictionaries)
and expressions; objects are zlib, bzip2 or xz compressed, as the index says. Nothing is
evaluated; any other object type, or a damaged file, is one ``CorpusError`` naming it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

from sparse_circuits.circuits.data.corpus.common import CorpusError

__all__ = ["read_r_lazyload"]


class _RReader:
    """A minimal reader of R's XDR serialization (versions 2 and 3): enough for data objects."""

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise CorpusError("not an R XDR serialization")
        self.data, self.pos, self.refs = data, 2, []
        version = self._int()
        self.pos += 8  # the writer's and the minimal reader's R versions
        if version == 3:
            length = self._int()
            self.pos += length  # the native encoding's name
        elif version != 2:
            raise CorpusError(f"R serialization version {version} is not supported")

    def _int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def _length(self) -> int:
        length = self._int()
        if length == -1:  # a long vector
            upper, lower = self._int(), self._int()
            length = (upper << 32) + (lower & 0xFFFFFFFF)
        return length

    def read(self) -> Any:
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (254, 253, 242, 241, 251, 250, 249, 248, 247):  # NULL, envs, markers
            return None
        if kind == 255:  # a reference to an earlier symbol
            index = flags >> 8 or self._int()
            return self.refs[index - 1]
        if kind == 1:  # a symbol
            symbol = self.read()
            self.refs.append(symbol)
            return symbol
        if kind == 2:  # a pairlist: [(tag, value), ...]
            items = []
            while kind == 2:
                if has_attr:
                    self.read()
                tag = self.read() if has_tag else None
                items.append((tag, self.read()))
                flags = self._int()
                kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
            if kind != 254:
                raise CorpusError("an R pairlist that does not end in NULL")
            return items
        if kind == 9:  # a string
            length = self._int()
            if length == -1:
                return None
            raw = self.data[self.pos : self.pos + length]
            self.pos += length
            return raw.decode("latin-1" if flags & (1 << 14) else "utf-8", errors="replace")
        if kind in (10, 13):  # logical, integer
            length = self._length()
            values = list(struct.unpack_from(f">{length}i", self.data, self.pos))
            self.pos += 4 * length
        elif kind == 14:  # double
            length = self._length()
            values = list(struct.unpack_from(f">{length}d", self.data, self.pos))
            self.pos += 8 * length
        elif kind in (16, 19, 20):  # character vector, list, expression
            values = [self.read() for _ in range(self._length())]
        else:
            raise CorpusError(f"R object of type {kind} is not supported")
        if has_attr:
            attributes = dict(self.read())
            names = attributes.get("names")
            if names is not None and kind == 19:
                return dict(zip(names, values, strict=True))
        return values


def _unserialize_blob(blob: bytes, compression: int) -> Any:
    """One object of an ``.rdb`` file: its length, (a compression byte,) compressed data."""
    body = blob[4:]
    if compression in (2, 3):
        kind, body = body[:1], body[1:]
        if kind == b"2":
            import bz2

            return _RReader(bz2.decompress(body)).read()
        if kind == b"X":
            import lzma

            return _RReader(lzma.decompress(body)).read()
        if kind == b"0":
            return _RReader(body).read()
    return _RReader(zlib.decompress(body)).read()


def read_r_lazyload(folder: str | Path, name: str = "Rdata") -> dict[str, Any]:
    """Every object of an R lazy-load database (``name.rdx`` + ``name.rdb``), by variable."""
    import gzip

    folder = Path(folder)
    try:
        index = _RReader(gzip.decompress((folder / f"{name}.rdx").read_bytes())).read()
        database = (folder / f"{name}.rdb").read_bytes()
        compression = int((index.get("compressed") or [1])[0])
        objects = {}
        for variable, (offset, length) in index["variables"].items():
            objects[variable] = _unserialize_blob(database[offset : offset + length], compression)
    except (OSError, EOFError, zlib.error, struct.error, KeyError, TypeError, ValueError) as error:
        if isinstance(error, CorpusError):
            raise
        raise CorpusError(
            f"{folder / name}: not a readable R lazy-load database ({error})"
        ) from None
    return objects
