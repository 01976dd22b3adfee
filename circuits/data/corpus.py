"""The text corpora dictionaries are trained on, and their cutting into fixed-length contexts.

Sources accepted by ``read_documents``:

1. ``"embedded"``: a corpus of real English built on this machine (below), the default;
2. a plain-text file: documents separated by one or more blank lines;
3. a ``.jsonl`` file: one JSON object a line, its ``text`` field a document;
4. a hub dataset name (e.g. ``owner/name``), read with the ``datasets`` package where it is
   installed and a network exists.

The embedded corpus
-------------------
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
  database with the small R unserializer below.
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

import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparse_circuits.circuits.model.loading import cache_dir, hub_reachable
from sparse_circuits.files import atomic_path, jsonl_strings, read_utf8, write_text_atomic

__all__ = [
    "CorpusError",
    "read_documents",
    "tokenize_contexts",
    "embedded_documents",
    "embedded_sources",
    "parse_fortunes",
    "fortune_documents",
    "austen_documents",
    "read_r_lazyload",
    "fetch_debian_packages",
    "pydoc_topic_documents",
    "stdlib_docstring_documents",
    "EMBEDDED_SOURCES",
    "EMBEDDED_SEED",
    "STDLIB_MODULES",
]

EMBEDDED = "embedded"
EMBEDDED_SEED = 0
"""Seed of the shuffle that mixes the embedded sources' documents."""

FORTUNE_DIR = Path("usr/share/games/fortunes")
FORTUNE_SKIP = frozenset({"ascii-art"})
"""Fortune files left out: pictures, not language."""
AUSTEN_DIR = Path("usr/lib/R/site-library/janeaustenr/data")

STDLIB_MODULES = (
    "abc", "argparse", "array", "ast", "base64", "bisect", "calendar", "cmath", "codecs",
    "collections", "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.message", "enum", "filecmp", "fnmatch", "fractions",
    "functools", "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac",
    "html", "html.parser", "http", "http.client", "inspect", "io", "ipaddress", "itertools",
    "json", "keyword", "linecache", "locale", "logging", "lzma", "math", "mimetypes", "numbers",
    "operator", "os", "pathlib", "pickle", "platform", "pprint", "queue", "random", "re",
    "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "socket", "sqlite3",
    "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "time", "timeit", "tokenize", "traceback", "types", "typing", "unicodedata",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref", "zipfile",
    "zlib", "bz2", "binascii", "errno", "signal", "stat", "sys", "zoneinfo",
)  # fmt: skip
"""Standard-library modules whose docstrings join the embedded corpus: importing any of them
has no side effect (no ``this``, ``antigravity``, GUI or platform-only modules)."""

_EXTRACTOR_VERSION = 1
"""Bump when the extraction changes, so old caches are no longer read."""


class CorpusError(ValueError):
    """A corpus that cannot be read or cut into contexts; the message names the file and line."""


# --------------------------------------------------------------------------- reading sources


def read_documents(
    source: str | os.PathLike = EMBEDDED,
    *,
    max_documents: int | None = None,
    split: str = "train",
) -> list[str]:
    """The documents of ``source``: ``"embedded"``, a text or ``.jsonl`` file, or a hub dataset.

    Documents that are empty or only whitespace are dropped. ``split`` is used for hub
    datasets only.
    """
    name = os.fspath(source)
    if name == EMBEDDED:
        documents = embedded_documents()
    else:
        path = Path(name).expanduser()
        if path.is_file():
            documents = _read_jsonl(path) if path.suffix == ".jsonl" else _read_plain(path)
        elif path.exists():
            raise CorpusError(f"{path}: not a file")
        elif _looks_like_path(name):
            raise CorpusError(f"{path}: file not found")
        else:
            documents = _read_hub(name, split=split, max_documents=max_documents)
    return documents if max_documents is None else documents[:max_documents]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or bool(Path(name).suffix)


def _nonempty(documents: list[str], path: Path) -> list[str]:
    if not documents:
        raise CorpusError(f"{path}: empty corpus (no document with text)")
    return documents


def _read_plain(path: Path) -> list[str]:
    text = read_utf8(path, CorpusError)
    pieces = re.split(r"\n[ \t\f\v\r]*\n", text)
    return _nonempty([piece.strip() for piece in pieces if piece.strip()], path)


def _read_jsonl(path: Path) -> list[str]:
    texts = (text for _, text in jsonl_strings(path, ("text",), CorpusError, what="corpus"))
    return _nonempty([text for text in texts if text.strip()], path)


def open_hub_dataset(
    name: str, *, split: str, error: type[Exception] = ValueError, what: str = ""
) -> Iterable[dict[str, Any]]:
    """The rows of a hub dataset's ``split``, streamed; without the ``datasets`` package, a
    network or the dataset, one ``error`` naming ``name`` (``what`` opens its message, e.g.
    "no such file, and ")."""
    needs = f"{name}: {what}reading it as a hub dataset needs the `datasets` package and a network"
    if importlib.util.find_spec("datasets") is None:
        raise error(f"{needs} (pip install datasets)")
    if not hub_reachable():
        raise error(f"{needs}; the hub cannot be reached")
    import datasets

    try:
        return datasets.load_dataset(name, split=split, streaming=True)
    except Exception as failure:  # datasets raises many kinds for a missing or private dataset
        reason = str(failure).splitlines()[0] if str(failure) else type(failure).__name__
        raise error(f"{name}: cannot load the hub dataset ({reason})") from None


def _read_hub(name: str, *, split: str, max_documents: int | None) -> list[str]:
    rows = open_hub_dataset(name, split=split, error=CorpusError, what="no such file, and ")
    documents = []
    for number, row in enumerate(rows, start=1):
        if "text" not in row:
            raise CorpusError(f'{name}, row {number}: no "text" field (fields: {sorted(row)})')
        if isinstance(row["text"], str) and row["text"].strip():
            documents.append(row["text"])
        if max_documents is not None and len(documents) >= max_documents:
            break
    if not documents:
        raise CorpusError(f"{name}: empty corpus (split {split!r} has no text)")
    return documents


# --------------------------------------------------------------------------- tokenizing


def tokenize_contexts(
    tokenizer: Any,
    documents: Iterable[str],
    *,
    context_length: int,
    prepend_bos: bool = True,
    max_contexts: int | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Cut ``documents`` into a ``(n_contexts, context_length)`` LongTensor of token ids.

    The documents are tokenized without special tokens and concatenated, separated by the
    tokenizer's EOS token (its BOS token if it has no EOS); the stream is cut into pieces of
    ``context_length`` tokens, or ``context_length - 1`` with ``prepend_bos``, where each
    context then starts with the BOS token. The remainder shorter than a context is dropped.
    Documents that tokenize to nothing are skipped. Tokenizing stops once ``max_contexts``
    contexts are filled.
    """
    if isinstance(documents, str):
        raise CorpusError("documents must be a list of strings, not one string")
    if not isinstance(documents, Sequence):
        documents = list(documents)
    text_length = context_length - (1 if prepend_bos else 0)
    if text_length < 1:
        raise CorpusError(
            f"context_length={context_length} leaves no room for text"
            + (" after the BOS token" if prepend_bos else "")
        )
    if max_contexts is not None and max_contexts < 1:
        raise CorpusError(f"max_contexts={max_contexts} must be at least 1")
    bos = tokenizer.bos_token_id
    if prepend_bos and bos is None:
        raise CorpusError("the tokenizer has no BOS token: pass prepend_bos=False")
    separator = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    if separator is None:
        raise CorpusError("the tokenizer has neither an EOS nor a BOS token to separate documents")

    stream = _token_stream(tokenizer, documents, separator, batch_size, max_contexts, text_length)
    n_contexts = len(stream) // text_length
    if max_contexts is not None:
        n_contexts = min(n_contexts, max_contexts)
    if n_contexts == 0:
        raise CorpusError(
            f"the corpus is shorter than one context: {len(stream)} tokens in "
            f"{len(documents)} documents, and a context holds {text_length} text tokens"
        )
    contexts = torch.from_numpy(stream[: n_contexts * text_length].reshape(n_contexts, -1))
    if prepend_bos:
        contexts = torch.cat([torch.full((n_contexts, 1), bos, dtype=torch.long), contexts], 1)
    return contexts.contiguous()


def _token_stream(
    tokenizer: Any,
    documents: Sequence[str],
    separator: int,
    batch_size: int,
    max_contexts: int | None,
    text_length: int,
) -> np.ndarray:
    """Every document's tokens, separated by ``separator``, as one int64 array."""
    from tqdm.auto import tqdm

    needed = None if max_contexts is None else max_contexts * text_length
    chunks: list[np.ndarray] = []
    total = 0
    with tqdm(total=len(documents), desc="tokenizing", unit="doc", delay=3, file=sys.stderr) as bar:
        for start in range(0, len(documents), batch_size):
            batch = list(documents[start : start + batch_size])
            encoded = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
            flat: list[int] = []
            for ids in encoded:
                if ids:
                    flat.append(separator)
                    flat.extend(ids)
            chunks.append(np.asarray(flat, dtype=np.int64))
            total += len(flat)
            bar.update(len(batch))
            if needed is not None and total > needed:  # > : the first separator is dropped
                break
    stream = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    return stream[1:]  # the separator before the first document


# --------------------------------------------------------------------------- embedded corpus


@dataclass(frozen=True)
class EmbeddedSource:
    name: str
    description: str
    build: Callable[[], list[str]]
    """Fetch and extract the documents; raises ``CorpusError`` when the source cannot be had."""
    version: Callable[[], str]
    """Part of the cache file's name: what the documents depend on."""


def _stderr(message: str) -> None:
    print(f"sparse-circuits: {message}", file=sys.stderr, flush=True)


def embedded_sources() -> dict[str, list[str]]:
    """Each available embedded source's documents, in file order (cached after the first use)."""
    folder = cache_dir() / "corpus"
    result: dict[str, list[str]] = {}
    for source in EMBEDDED_SOURCES:
        documents = _cached_source(source, folder)
        if documents is not None:
            result[source.name] = documents
    if not any(result.values()):
        raise CorpusError(f"the embedded corpus has no text: no source could be read ({folder})")
    return result


def embedded_documents() -> list[str]:
    """The embedded corpus: every source's documents, mixed by a fixed-seed shuffle."""
    documents = [doc for docs in embedded_sources().values() for doc in docs]
    random.Random(EMBEDDED_SEED).shuffle(documents)
    return documents


_UNAVAILABLE: dict[str, str] = {}
"""Sources that failed in this process, with the reason: not tried again until it ends."""


def _cached_source(source: EmbeddedSource, folder: Path) -> list[str] | None:
    path = folder / f"{source.name}-{source.version()}-v{_EXTRACTOR_VERSION}.jsonl"
    if path.is_file():
        try:
            return _read_jsonl(path)
        except CorpusError:
            pass  # a damaged cache is rebuilt
    if source.name in _UNAVAILABLE:
        return None
    try:
        documents = source.build()
        if not documents:
            raise CorpusError("it holds no text")
    except CorpusError as error:
        _UNAVAILABLE[source.name] = str(error)
        warnings.warn(
            f"embedded corpus: skipping source {source.name!r} ({source.description}): {error}",
            stacklevel=3,
        )
        return None
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        lines = (json.dumps({"text": doc}, ensure_ascii=False) + "\n" for doc in documents)
        tmp.write_bytes("".join(lines).encode("utf-8"))
    summary = {"source": source.name, "documents": len(documents)}
    summary["characters"] = sum(map(len, documents))
    write_text_atomic(path.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
    return documents


# ---- Debian packages


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CorpusError(f"{command[0]} {command[1]} failed ({error})") from None


def _last_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("E:")]
    lines = lines or result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
    return lines[-1]


def fetch_debian_packages(packages: Sequence[str], into: Path) -> Path:
    """Download Debian packages (not installed) and unpack them all into ``into``."""
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise CorpusError("apt-get and dpkg-deb are needed to fetch Debian packages")
    _stderr(f"fetching Debian package{'s' * (len(packages) > 1)} {', '.join(packages)} ...")
    downloads = into / "debs"
    downloads.mkdir(parents=True)
    result = _run([apt_get, "download", *packages], cwd=downloads)
    if result.returncode != 0 and re.search(
        r"Unable to locate package|has no installation candidate", result.stderr
    ):
        _stderr("no Debian package list: running apt-get update ...")
        update = _run([apt_get, "update"])
        if update.returncode != 0:
            raise CorpusError(f"apt-get update failed: {_last_error(update)}")
        result = _run([apt_get, "download", *packages], cwd=downloads)
    if result.returncode != 0:
        raise CorpusError(f"apt-get download failed: {_last_error(result)}")
    root = into / "root"
    for deb in sorted(downloads.glob("*.deb")):
        unpacked = _run([dpkg_deb, "-x", str(deb), str(root)])
        if unpacked.returncode != 0:
            raise CorpusError(f"dpkg-deb -x {deb.name} failed: {_last_error(unpacked)}")
    return root


def _debian_source(packages: Sequence[str], extract: Callable[[Path], list[str]]):
    def build() -> list[str]:
        with tempfile.TemporaryDirectory(prefix="sparse-circuits-deb-") as folder:
            return extract(fetch_debian_packages(packages, Path(folder)))

    return build


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


def _fortunes_from_root(root: Path) -> list[str]:
    return fortune_documents(root / FORTUNE_DIR)


# ---- Jane Austen's novels, from an R package's lazy-load database


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


def _austen_from_root(root: Path) -> list[str]:
    return austen_documents(root / AUSTEN_DIR)


# ---- the Python standard library's documentation


def pydoc_topic_documents() -> list[str]:
    """The language reference's topics shipped with Python, in topic order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise CorpusError(f"pydoc_data is missing from this Python ({error})") from None
    return [topics[name].strip() for name in sorted(topics) if topics[name].strip()]


def _docstring(obj: Any) -> str:
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else ""
    return inspect.cleandoc(doc) if doc else ""


def _module_document(module: Any) -> str:
    sections = []
    if doc := _docstring(module):
        sections.append(f"{module.__name__}\n\n{doc}")
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if doc := _docstring(obj):
            sections.append(f"{module.__name__}.{name}\n\n{doc}")
        if inspect.isclass(obj):
            for member, value in sorted(vars(obj).items()):
                value = getattr(value, "__func__", value)  # staticmethod, classmethod
                if member.startswith("_") or not inspect.isroutine(value):
                    continue
                if doc := _docstring(value):
                    sections.append(f"{module.__name__}.{name}.{member}\n\n{doc}")
    return "\n\n".join(sections)


def stdlib_docstring_documents(modules: Sequence[str] = STDLIB_MODULES) -> list[str]:
    """One document a module in ``modules`` (those that import here), in the given order."""
    from tqdm.auto import tqdm

    documents = []
    for name in tqdm(modules, desc="docstrings", unit="module", delay=3, file=sys.stderr):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except ImportError:
            continue  # e.g. a Python built without sqlite3
        # A module whose members misbehave on inspection is left out; deprecated aliases
        # (typing.io) warn when looked at.
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if document := _module_document(module):
                documents.append(document)
    return documents


def _python_version() -> str:
    return "py" + ".".join(map(str, sys.version_info[:3]))


def _collect_python(build: Callable[[], list[str]], what: str) -> Callable[[], list[str]]:
    def run() -> list[str]:
        _stderr(f"collecting {what} ...")
        return build()

    return run


EMBEDDED_SOURCES: tuple[EmbeddedSource, ...] = (
    EmbeddedSource(
        name="fortunes",
        description="Debian fortunes and fortunes-min",
        build=_debian_source(("fortunes-min", "fortunes"), _fortunes_from_root),
        version=lambda: "debian",
    ),
    EmbeddedSource(
        name="austen",
        description="Jane Austen's novels, Debian r-cran-janeaustenr",
        build=_debian_source(("r-cran-janeaustenr",), _austen_from_root),
        version=lambda: "debian",
    ),
    EmbeddedSource(
        name="pydoc",
        description="Python's pydoc topics",
        build=_collect_python(pydoc_topic_documents, "Python's pydoc topics"),
        version=_python_version,
    ),
    EmbeddedSource(
        name="docstrings",
        description="docstrings of standard-library modules",
        build=_collect_python(stdlib_docstring_documents, "standard-library docstrings"),
        version=_python_version,
    ),
)
"""The embedded corpus's sources, in the order their documents are joined before the shuffle."""
