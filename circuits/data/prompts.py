"""Prompt sets: JSONL, one example a line, ``{"clean_prefix", "patch_prefix", "clean_answer",
"patch_answer"}``; the ``patch_*`` fields may be absent (then the baseline is zero).

Examples are tokenised without padding and grouped by (clean length, patch length), so every
batch runs exactly as its prompts would alone. A clean prefix and its patch prefix of different
lengths are aligned at their last token (the one the metric reads); clean positions with no
patch counterpart count as unchanged (``align_patch``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparse_circuits.files import jsonl_records

__all__ = [
    "Example",
    "PromptError",
    "PromptBatch",
    "align_patch",
    "read_prompts",
    "tokenize_prompts",
]


class PromptError(ValueError):
    """A prompt file or example that cannot be used; the message names file and line."""


@dataclass(frozen=True)
class Example:
    clean_prefix: str
    clean_answer: str
    patch_prefix: str | None = None
    patch_answer: str | None = None


@dataclass
class PromptBatch:
    """Examples of one token length. Shapes: ``B`` examples, ``T`` positions."""

    clean_ids: torch.Tensor
    """``(B, T)``."""
    clean_answer: torch.Tensor
    """``(B,)`` token id of the clean answer."""
    patch_ids: torch.Tensor | None = None
    """``(B, S)``: the patch prefixes (their own length ``S``); ``None``: zero baseline."""
    patch_answer: torch.Tensor | None = None
    """``(B,)``; ``None`` when the prompt set has no patch answers."""
    indices: list[int] | None = None
    """Positions of these examples in the prompt set."""

    def __len__(self) -> int:
        return len(self.clean_ids)

    @property
    def length(self) -> int:
        return self.clean_ids.shape[1]

    def to(self, device: torch.device | str) -> PromptBatch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PromptBatch(
            move(self.clean_ids),
            move(self.clean_answer),
            move(self.patch_ids),
            move(self.patch_answer),
            self.indices,
        )

    def tile(self, n: int) -> PromptBatch:
        """The batch repeated ``n`` times, block after block (``n * B`` rows)."""
        rep = lambda t: None if t is None else t.repeat(n, *([1] * (t.dim() - 1)))  # noqa: E731
        return PromptBatch(
            rep(self.clean_ids),
            rep(self.clean_answer),
            rep(self.patch_ids),
            rep(self.patch_answer),
            None if self.indices is None else self.indices * n,
        )

    def split(self, size: int) -> list[PromptBatch]:
        """Chunks of at most ``size`` examples."""
        pieces = []
        for start in range(0, len(self), size):
            part = slice(start, start + size)

            def pick(t, part=part):
                return None if t is None else t[part]

            pieces.append(
                PromptBatch(
                    self.clean_ids[part],
                    self.clean_answer[part],
                    pick(self.patch_ids),
                    pick(self.patch_answer),
                    None if self.indices is None else self.indices[part],
                )
            )
        return pieces


REQUIRED = ("clean_prefix", "clean_answer")
OPTIONAL = ("patch_prefix", "patch_answer")


def read_prompts(path: str | Path) -> list[Example]:
    """Read a JSONL prompt set; every problem names the file and line."""
    examples, wheres = [], []
    for where, record in jsonl_records(path, PromptError, what="prompt file"):
        missing = [field for field in REQUIRED if not isinstance(record.get(field), str)]
        if missing:
            raise PromptError(f"{where}: missing or non-string field(s) {missing}")
        examples.append(Example(**{k: record[k] for k in REQUIRED + OPTIONAL if k in record}))
        wheres.append(where)
    if not examples:
        raise PromptError(f"{path}: no examples")
    _check_patch_fields(examples, wheres)
    return examples


def _check_patch_fields(examples: list[Example], wheres: list[str]) -> None:
    """Each patch field is in every example or in none; else one error naming the first
    example (``wheres[i]``, ``file:line``) whose patch fields differ from the first one's."""
    first = _patch_fields(examples[0])
    for where, example in zip(wheres, examples, strict=True):
        if (fields := _patch_fields(example)) != first:
            raise PromptError(
                f"{where}: patch fields {fields}, but {wheres[0]} has {first}; "
                "either every example has patch fields or none does"
            )


def _patch_fields(example: Example) -> list[str]:
    """The optional patch fields an example has."""
    return [field for field in OPTIONAL if getattr(example, field) is not None]


def _single_token(tokenizer: Any, text: str, where: str) -> int:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise PromptError(
            f"{where}: answer {text!r} is {len(ids)} tokens {pieces}, but must be exactly one"
        )
    return ids[0]


def _prefix_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text).input_ids


def tokenize_prompts(
    tokenizer: Any,
    examples: list[Example],
    *,
    source: str = "prompts",
    same_length: bool = False,
) -> list[PromptBatch]:
    """One ``PromptBatch`` per (clean, patch) token length. ``same_length`` (aggregation
    ``none``) requires every clean and patch prefix to have one token length. Errors name an
    example ``source:N``, ``N`` counting the examples from 1."""
    if examples:
        _check_patch_fields(examples, [f"{source}:{i + 1}" for i in range(len(examples))])
    groups: dict[tuple[int, int | None], list] = defaultdict(list)
    for index, example in enumerate(examples):
        where = f"{source}:{index + 1}"
        clean = _prefix_ids(tokenizer, example.clean_prefix)
        patch = (
            None if example.patch_prefix is None else _prefix_ids(tokenizer, example.patch_prefix)
        )
        if same_length and patch is not None and len(patch) != len(clean):
            raise PromptError(
                f"{where}: clean prefix has {len(clean)} tokens and patch prefix {len(patch)}; "
                "aggregation 'none' compares positions, so they must be equally long"
            )
        clean_answer = _single_token(tokenizer, example.clean_answer, where)
        patch_answer = (
            None
            if example.patch_answer is None
            else _single_token(tokenizer, example.patch_answer, where)
        )
        key = (len(clean), None if patch is None else len(patch))
        groups[key].append((index, clean, patch, clean_answer, patch_answer))
    if same_length and len({length for length, _ in groups}) > 1:
        raise PromptError(
            f"{source}: aggregation 'none' needs prompts of one token length, found lengths "
            f"{sorted({length for length, _ in groups})}"
        )
    batches = []
    for key in sorted(groups, key=lambda k: (k[0], k[1] or 0)):
        rows = groups[key]
        batches.append(
            PromptBatch(
                clean_ids=torch.tensor([r[1] for r in rows]),
                clean_answer=torch.tensor([r[3] for r in rows]),
                patch_ids=None if rows[0][2] is None else torch.tensor([r[2] for r in rows]),
                patch_answer=None if rows[0][4] is None else torch.tensor([r[4] for r in rows]),
                indices=[r[0] for r in rows],
            )
        )
    return batches


def align_patch(patch_BS: torch.Tensor, clean_BT: torch.Tensor) -> torch.Tensor:
    """Patch activations ``(B, S, ...)`` on the clean positions ``(B, T, ...)``, aligned at
    the last token; clean positions with no patch counterpart keep their clean value."""
    S, T = patch_BS.shape[1], clean_BT.shape[1]
    if S == T:
        return patch_BS
    if S > T:
        return patch_BS[:, S - T :]
    return torch.cat([clean_BT[:, : T - S], patch_BS], dim=1)
