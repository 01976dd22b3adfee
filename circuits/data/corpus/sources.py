"""Corpus sources built on this machine and cached: a ``CorpusSource`` says how to build one
source's documents; ``source_documents`` reads each from its JSONL cache under
``cache_dir() / "corpus"`` or builds it on first use (a source that cannot be had is skipped
with a warning, and not tried again in this process)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError
from sparse_circuits.circuits.data.corpus.text_files import read_jsonl_documents
from sparse_circuits.circuits.model.loading import cache_dir
from sparse_circuits.files import atomic_path, write_text_atomic

__all__ = ["CorpusSource", "source_documents"]

_EXTRACTOR_VERSION = 1
"""Bump when the extraction changes, so old caches are no longer read."""


@dataclass(frozen=True)
class CorpusSource:
    """One source of a corpus: how to build its documents and name its cache."""

    name: str
    """The source's name: its cache file's prefix and its key in ``source_documents``."""
    description: str
    """What it holds, for the warning when it is skipped."""
    build: Callable[[], list[str]]
    """Fetch and extract the documents; raises ``CorpusError`` when the source cannot be had."""
    version: Callable[[], str]
    """Part of the cache file's name: what the documents depend on."""


def source_documents(sources: Sequence[CorpusSource], corpus: str) -> dict[str, list[str]]:
    """Each available source's documents, in file order (cached after the first use); ``corpus``
    names the corpus in the warnings and the error when no source has text."""
    folder = cache_dir() / "corpus"
    result: dict[str, list[str]] = {}
    for source in sources:
        documents = _cached_source(source, folder, corpus)
        if documents is not None:
            result[source.name] = documents
    if not any(result.values()):
        raise CorpusError(f"the {corpus} corpus has no text: no source could be read ({folder})")
    return result


_UNAVAILABLE: dict[str, str] = {}
"""Sources that failed in this process, with the reason: not tried again until it ends."""


def _cached_source(source: CorpusSource, folder: Path, corpus: str) -> list[str] | None:
    path = folder / f"{source.name}-{source.version()}-v{_EXTRACTOR_VERSION}.jsonl"
    if path.is_file():
        try:
            return read_jsonl_documents(path)
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
            f"{corpus} corpus: skipping source {source.name!r} ({source.description}): {error}",
            stacklevel=4,
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
