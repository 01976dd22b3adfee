"""Bias in Bios (De-Arteaga et al. 2019) from the hub, written as SHIFT's data files, where a
network exists.

The Sparse Feature Circuits paper's setting (Marks et al. 2024, section 4): classify the
profession, professor (label 1) or nurse (label 0), when gender is spuriously correlated with it
(group 1 male, 0 female, as in ``editing.bios``; the hub's ``gender`` is 0 male, 1 female). A
biography is the hub's ``hard_text``, the biography without the sentence naming the profession.

- ``train.jsonl``, from the hub's ``train`` split: the *ambiguous* split, male professors and
  female nurses, equally many;
- ``test.jsonl``, from its ``test`` split: the *balanced* split, the four (profession, gender)
  cells equally large.

Each cell is subsampled to the smallest one (or to ``per_cell``) by a seeded draw. Offline it
fails with one error naming the dataset; the shipped generated biographies stand in::

    python -c "from editing.bias_in_bios import write_bias_in_bios; write_bias_in_bios('bib')"
    sparse-circuits shift --model M --dictionaries DIR --train bib/train.jsonl \\
        --test bib/test.jsonl --auto --out shift-bib
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sparse_circuits.editing.bios import FEMALE, MALE, NURSE, PROFESSOR, BiosError, bios_file

__all__ = ["HUB_NAME", "AMBIGUOUS", "BALANCED", "select_cells", "write_bias_in_bios"]

HUB_NAME = "LabHC/bias_in_bios"
PROFESSION_IDS = {PROFESSOR: 21, NURSE: 13}
"""The hub's class index of each profession label."""
HUB_MALE = 0
"""The hub's ``gender`` value for men."""
AMBIGUOUS = ((PROFESSOR, MALE), (NURSE, FEMALE))
BALANCED = ((PROFESSOR, MALE), (PROFESSOR, FEMALE), (NURSE, MALE), (NURSE, FEMALE))
"""``(label, group)`` cells of each split."""


def select_cells(
    rows: Iterable[dict[str, Any]],
    cells: Sequence[tuple[int, int]],
    *,
    per_cell: int | None = None,
    seed: int = 0,
    source: str = HUB_NAME,
) -> list[dict[str, Any]]:
    """``{"text", "label", "group"}`` examples from hub rows (``hard_text``, ``profession``,
    ``gender``), equally many in each ``(label, group)`` of ``cells``: the smallest cell's size,
    or ``per_cell`` when smaller; shuffled. Rows of other professions are skipped."""
    label_of = {hub_id: label for label, hub_id in PROFESSION_IDS.items()}
    texts: dict[tuple[int, int], list[str]] = {cell: [] for cell in cells}
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ("hard_text", "profession", "gender") if key not in row]
        if missing:
            raise BiosError(f"{source}, row {number}: missing field(s) {missing}")
        label = label_of.get(row["profession"])
        group = MALE if row["gender"] == HUB_MALE else FEMALE
        text = row["hard_text"]
        if (label, group) in texts and isinstance(text, str) and text.strip():
            texts[(label, group)].append(text)
    empty = [cell for cell, found in texts.items() if not found]
    if empty:
        raise BiosError(f"{source}: no biography in (label, group) cell(s) {empty}")
    n = min(len(found) for found in texts.values())
    n = n if per_cell is None else min(n, per_cell)
    rng = random.Random(seed)
    examples = [
        {"text": text, "label": label, "group": group}
        for (label, group), found in texts.items()
        for text in rng.sample(found, n)
    ]
    rng.shuffle(examples)
    return examples


def write_bias_in_bios(
    folder: str | Path,
    *,
    per_cell_train: int | None = None,
    per_cell_test: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write ``train.jsonl`` (ambiguous) and ``test.jsonl`` (balanced) into ``folder`` from the
    hub dataset, each atomically; nothing is written unless both splits load."""
    from sparse_circuits.circuits.data.corpus import open_hub_dataset
    from sparse_circuits.files import write_text_atomic

    splits = {}
    for name, hub_split, cells, per_cell in (
        ("train", "train", AMBIGUOUS, per_cell_train),
        ("test", "test", BALANCED, per_cell_test),
    ):
        rows = open_hub_dataset(HUB_NAME, split=hub_split, error=BiosError)
        source = f"{HUB_NAME} ({hub_split})"
        splits[name] = select_cells(rows, cells, per_cell=per_cell, seed=seed, source=source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_text_atomic(bios_file(name, folder), "".join(json.dumps(e) + "\n" for e in examples))
        for name, examples in splits.items()
    ]
