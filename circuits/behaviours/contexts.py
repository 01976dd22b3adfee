"""Next-token contexts of a corpus that the model predicts well: the pipeline's first stage
(Marks et al. 2024, section 5, after Michaud et al. 2023's quanta discovery).

1. Read the corpus as one token stream: ``tokenize_contexts`` with one-token rows joins the
   documents, each preceded by the separator token; each token's document and its position in
   the document follow from the separators.
2. Candidates: every token with at least ``prefix_length - 1`` tokens of its own document
   before it (``prefix_length`` when the tokenizer adds no BOS). Its prefix is BOS and those
   tokens, the token itself the answer, so every context has ``prefix_length`` tokens.
3. In a seeded random order, drop repeated (prefix, answer) pairs and score the rest in
   batches: ``loss = -log p(answer | prefix)`` from one forward pass (last position only).
4. Keep those with loss below ``max_loss`` until ``n_contexts`` are found or the candidates
   run out.

One length for every context means a cluster's contexts make one prompt batch: the circuit
runs in few passes and mean ablation averages over all of a cluster's held-out contexts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.data.corpus import tokenize_contexts
from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.model.activations import uses_bos
from sparse_circuits.circuits.model.adapters import ModelAdapter, model_device, torch_module
from sparse_circuits.errors import ConfigError
from sparse_circuits.files import read_safetensors, write_safetensors

__all__ = ["ContextConfig", "Contexts", "ContextError", "find_contexts", "token_stream"]


class ContextError(ValueError):
    """A contexts file that cannot be read; the message names the file."""


@dataclass
class ContextConfig:
    """Which next-token contexts of a corpus ``find_contexts`` keeps."""

    n_contexts: int = 2000
    """Contexts to find; fewer when the corpus runs out of candidates."""
    max_loss: float = 1.0
    """Keep a context only if the model's loss on its answer is below this (nats)."""
    prefix_length: int = 16
    """Tokens of every context's prefix, BOS included."""
    corpus_tokens: int | None = None
    """Read at most this many tokens of the corpus (``None``: all of it)."""
    score_batch_size: int = 64
    """Candidates scored per forward pass (no backward pass: more than a circuit's batch)."""
    seed: int = 0
    """Seed of the order in which candidates are scored."""

    def __post_init__(self) -> None:
        if self.n_contexts < 1:
            raise ConfigError(f"n_contexts must be at least 1, got {self.n_contexts}")
        if not self.max_loss > 0:
            raise ConfigError(f"max_loss must be positive, got {self.max_loss}")
        if self.prefix_length < 2:
            raise ConfigError(f"prefix_length must be at least 2, got {self.prefix_length}")
        if self.corpus_tokens is not None and self.corpus_tokens < 1:
            raise ConfigError(f"corpus_tokens must be at least 1, got {self.corpus_tokens}")
        if self.score_batch_size < 1:
            raise ConfigError(f"score_batch_size must be at least 1, got {self.score_batch_size}")


@dataclass
class Contexts:
    """``N`` contexts of ``T`` tokens each, in the order they were found."""

    ids_NT: torch.Tensor
    """``(N, T)`` prefix token ids (BOS first when the tokenizer uses one)."""
    answers_N: torch.Tensor
    """``(N,)`` the true next token of each prefix."""
    documents_N: torch.Tensor
    """``(N,)`` index of the answer's document among the corpus's documents with tokens."""
    positions_N: torch.Tensor
    """``(N,)`` the answer's position among its document's tokens."""
    losses_N: torch.Tensor
    """``(N,)`` the model's loss on the answer, ``-log p(answer | prefix)``."""

    def __len__(self) -> int:
        return len(self.answers_N)

    def batch(self, members: Sequence[int]) -> PromptBatch:
        """The contexts ``members`` as one prompt batch with a zero baseline (no patch)."""
        rows = torch.as_tensor(list(members), dtype=torch.long)
        return PromptBatch(
            clean_ids=self.ids_NT[rows], clean_answer=self.answers_N[rows], indices=list(members)
        )

    def record(self, tokenizer: Any, index: int) -> dict[str, Any]:
        """``{"text", "answer", "document", "position"}`` of one context, for people."""
        ids = self.ids_NT[index].tolist()
        if tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]:
            ids = ids[1:]
        return {
            "text": tokenizer.decode(ids),
            "answer": tokenizer.decode([int(self.answers_N[index])]),
            "document": int(self.documents_N[index]),
            "position": int(self.positions_N[index]),
        }

    def save(self, path: str | Path) -> Path:
        return write_safetensors(path, vars(self))

    @classmethod
    def load(cls, path: str | Path) -> Contexts:
        tensors = read_safetensors(path, ContextError)
        missing = sorted(set(cls.__dataclass_fields__) - set(tensors))
        if missing:
            raise ContextError(f"{path}: not a contexts file (missing {', '.join(missing)})")
        return cls(**{name: tensors[name] for name in cls.__dataclass_fields__})


def token_stream(
    tokenizer: Any, documents: Sequence[str], *, max_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The corpus as one stream: ``(S,)`` token ids, each token's document index and its
    position in the document (the separators between documents: document -1, position -1).

    The stream is ``tokenize_contexts``' (documents joined by the tokenizer's EOS token, its
    BOS token without one); a document whose own text tokenizes to the separator would be
    split there."""
    stream_S = tokenize_contexts(
        tokenizer, documents, context_length=1, prepend_bos=False, max_contexts=max_tokens
    ).flatten()
    eos = tokenizer.eos_token_id
    separator = eos if eos is not None else tokenizer.bos_token_id
    is_separator_S = stream_S == separator
    index_S = torch.arange(len(stream_S))
    last_separator_S = torch.cummax(torch.where(is_separator_S, index_S, -1), dim=0).values
    positions_S = index_S - last_separator_S - 1
    documents_S = torch.cumsum(is_separator_S.long(), dim=0)
    positions_S[is_separator_S] = -1
    documents_S[is_separator_S] = -1
    return stream_S, documents_S, positions_S


@torch.no_grad()
def _answer_losses(model: Any, adapter: ModelAdapter, ids_BT: torch.Tensor, answers_B):
    """``(B,)`` loss of each answer after its prefix, from the logits of the last position."""
    kwargs = adapter.forward_kwargs(last_position_only=True)
    logits_BV = torch_module(model)(ids_BT.to(model_device(model)), **kwargs).logits[:, -1]
    log_probs_BV = logits_BV.float().log_softmax(dim=-1).cpu()
    return -log_probs_BV[torch.arange(len(ids_BT)), answers_B]


def find_contexts(
    model: Any,
    adapter: ModelAdapter,
    documents: Sequence[str],
    config: ContextConfig,
    *,
    progress: bool = True,
) -> Contexts:
    """Up to ``config.n_contexts`` low-loss contexts of ``documents`` (steps in the module's
    docstring); a ``ConfigError`` naming the setting when the documents hold none."""
    tokenizer = model.tokenizer
    stream_S, documents_S, positions_S = token_stream(
        tokenizer, documents, max_tokens=config.corpus_tokens
    )
    bos = [tokenizer.bos_token_id] if uses_bos(tokenizer) else []
    n_text = config.prefix_length - len(bos)
    candidates = (positions_S >= n_text).nonzero().squeeze(-1)
    if len(candidates) == 0:
        raise ConfigError(
            f"no document has more than {n_text} tokens, so none holds a context of "
            f"prefix_length {config.prefix_length}"
        )
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(config.seed))
    candidates = candidates[order]
    offsets_T = torch.arange(-n_text, 0)
    bos_T = torch.tensor(bos, dtype=torch.long)
    seen: set[tuple[int, ...]] = set()
    kept: list[tuple[torch.Tensor, ...]] = []
    n_kept = 0
    bar = tqdm(
        total=config.n_contexts, desc="contexts", unit="ctx", disable=not progress, file=sys.stderr
    )
    for start in range(0, len(candidates), config.score_batch_size):
        chunk = candidates[start : start + config.score_batch_size]
        text_BT = stream_S[chunk[:, None] + offsets_T]
        answers_B = stream_S[chunk]
        fresh = []
        for row, (text, answer) in enumerate(
            zip(text_BT.tolist(), answers_B.tolist(), strict=True)
        ):
            key = (*text, answer)
            if key not in seen:
                seen.add(key)
                fresh.append(row)
        if not fresh:
            continue
        chunk, text_BT, answers_B = chunk[fresh], text_BT[fresh], answers_B[fresh]
        ids_BT = torch.cat([bos_T.expand(len(chunk), -1), text_BT], dim=1)
        losses_B = _answer_losses(model, adapter, ids_BT, answers_B)
        keep = (losses_B < config.max_loss).nonzero().squeeze(-1)[: config.n_contexts - n_kept]
        at = chunk[keep]
        kept.append(
            (ids_BT[keep], answers_B[keep], documents_S[at], positions_S[at], losses_B[keep])
        )
        n_kept += len(keep)
        bar.update(len(keep))
        if n_kept >= config.n_contexts:
            break
    bar.close()
    if n_kept == 0:
        raise ConfigError(
            f"no context has a loss below max_loss {config.max_loss} "
            f"(scored {min(len(candidates), start + config.score_batch_size)} candidates)"
        )
    ids, answers, docs, positions, losses = (torch.cat(parts) for parts in zip(*kept, strict=True))
    return Contexts(ids, answers, docs, positions, losses)
