"""Reading a corpus, and its cutting into fixed-length contexts.

Sources accepted by ``read_documents``:

1. ``"embedded"``: a corpus of real English built on this machine (``corpus.embedded``), the
   default; ``"large"``: its sources and more, deduplicated (``corpus.large``);
2. a plain-text file: documents separated by one or more blank lines;
3. a ``.jsonl`` file: one JSON object a line, its ``text`` field a document;
4. a hub dataset name (e.g. ``owner/name``), read with the ``datasets`` package where it is
   installed and a network exists.

``tokenize_contexts`` cuts the documents into a ``(n_contexts, context_length)`` tensor of
token ids.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparse_circuits.circuits.data.corpus.common import CorpusError
from sparse_circuits.circuits.data.corpus.embedded import EMBEDDED, embedded_documents
from sparse_circuits.circuits.data.corpus.large import LARGE, large_documents
from sparse_circuits.circuits.data.corpus.text_files import (
    read_jsonl_documents,
    read_plain_documents,
)
from sparse_circuits.circuits.model.loading import hub_reachable

__all__ = ["read_documents", "open_hub_dataset", "tokenize_contexts"]


def read_documents(
    source: str | os.PathLike = EMBEDDED,
    *,
    max_documents: int | None = None,
    split: str = "train",
) -> list[str]:
    """The documents of ``source``: ``"embedded"``, ``"large"``, a text or ``.jsonl`` file, or a
    hub dataset.

    Documents that are empty or only whitespace are dropped. ``split`` is used for hub
    datasets only.
    """
    name = os.fspath(source)
    if name == EMBEDDED:
        documents = embedded_documents()
    elif name == LARGE:
        documents = large_documents()
    else:
        path = Path(name).expanduser()
        if path.is_file():
            documents = (
                read_jsonl_documents(path)
                if path.suffix == ".jsonl"
                else read_plain_documents(path)
            )
        elif path.exists():
            raise CorpusError(f"{path}: not a file")
        elif _looks_like_path(name):
            raise CorpusError(f"{path}: file not found")
        else:
            documents = _read_hub(name, split=split, max_documents=max_documents)
    return documents if max_documents is None else documents[:max_documents]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or bool(Path(name).suffix)


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
