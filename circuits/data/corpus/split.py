"""A held-out split of corpus documents that never overlaps training.

1. A document is held out when the hash of its normalised text (``dedup.normalise``), read as
   a fraction of 2**64, is below ``eval_fraction``: the choice depends on the document alone,
   so adding documents never moves one from one side to the other, and copies of a text all
   land on the same side. The distinct text with the smallest hash is always held out, so a
   small corpus, where no hash falls below, still holds one out.
2. Paragraphs of held-out documents that also occur (normalised) in a training document are
   removed from them, and held-out documents left empty are dropped: no paragraph is shared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sparse_circuits.circuits.data.corpus.common import CorpusError
from sparse_circuits.circuits.data.corpus.dedup import (
    normalise,
    paragraph_texts,
    paragraphs,
    text_key,
)

__all__ = ["DocumentSplit", "held_out_rank", "split_documents"]


@dataclass(frozen=True)
class DocumentSplit:
    """Documents to train on, and held-out documents none of whose paragraphs are trained on."""

    train: list[str]
    """The training documents, in their order."""
    eval: list[str]
    """The held-out documents, in their order, without paragraphs that occur in ``train``."""


def held_out_rank(document: str) -> float:
    """Where a document's normalised text hashes to in [0, 1): below the eval fraction, held out."""
    digest = hashlib.blake2b(normalise(document).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_documents(documents: Sequence[str], *, eval_fraction: float) -> DocumentSplit:
    """Split ``documents`` into training and held-out documents (see the module's steps)."""
    if not 0 < eval_fraction < 1:
        raise CorpusError(f"eval_fraction={eval_fraction} must be between 0 and 1")
    ranks = [held_out_rank(document) for document in documents]
    if len(set(ranks)) < 2:
        raise CorpusError(
            f"holding documents out needs two distinct documents; the corpus has {len(set(ranks))}"
        )
    lowest = min(ranks)
    held = [rank < eval_fraction or rank == lowest for rank in ranks]
    train = [doc for doc, out in zip(documents, held, strict=True) if not out]
    trained = {text_key(p) for doc in train for p in paragraphs(doc)}
    held_out = []
    for document, out in zip(documents, held, strict=True):
        if not out:
            continue
        pieces = paragraph_texts(document)
        kept = [piece for piece in pieces if text_key(normalise(piece)) not in trained]
        if kept:
            held_out.append(document if len(kept) == len(pieces) else "\n\n".join(kept))
    if not held_out:
        raise CorpusError("every held-out document repeats paragraphs of the training documents")
    return DocumentSplit(train=train, eval=held_out)
