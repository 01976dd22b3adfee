"""What every biography generator of the SHIFT experiment shares (Marks et al. 2024, section 4):
the labels, the splits, the draw of distinct texts, the files and their reader.

A generator writes texts ``{"text", "label", "group"}``: profession as the label (professor 1,
nurse 0), gender as the spurious group (1 male, 0 female), in two splits:

- ``ambiguous``: profession and gender perfectly correlated (every professor male, every nurse
  female), half of each;
- ``balanced``: the four (label, group) cells equally large;

and a gender concept set ``{"text", "group"}`` with no profession in it, against which the
automatic SHIFT judge tests whether a feature is about gender. The generators (``GENERATORS``)
are modules that share no template, phrase or first name, so that SHIFT's choices can be tuned
on one and reported on the other: ``editing.bios`` (third-person biographies) and
``editing.profiles`` (a host introducing a guest who speaks in the first person).
"""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sparse_circuits.files import jsonl_records, write_text_atomic

__all__ = [
    "FEMALE",
    "FILES",
    "GENERATORS",
    "MALE",
    "NURSE",
    "PROFESSOR",
    "BiosError",
    "Generator",
    "data_file",
    "draw_distinct",
    "generator",
    "name_pool",
    "read_labelled",
    "concept_groups",
    "split_cells",
    "with_capitals",
    "write_generated",
]

PROFESSOR, NURSE = 1, 0
MALE, FEMALE = 1, 0
FILES = ("train", "test", "gender_concept")
"""The shipped files of a generator: the ambiguous split, the balanced split (held-out names)
and the gender concept set."""
GENERATORS = ("bios", "profiles")
"""Modules of ``sparse_circuits.editing`` that define a ``GENERATOR``."""


class BiosError(ValueError):
    """A labelled data file or example that cannot be used; the message names file and line."""


class Generator(NamedTuple):
    """One generator's entry points and shipped files."""

    generate: Callable[..., list[dict[str, Any]]]
    """``(n, *, split, seed, names, exclude) -> [{"text", "label", "group"}]``."""
    concept: Callable[..., list[dict[str, Any]]]
    """``(n, *, seed, names) -> [{"text", "group"}]``: gender only, no profession."""
    data_dir: Path
    """The folder of its shipped ``FILES``."""
    first_names: dict[int, tuple[str, ...]]
    """Group -> every first name it may use."""
    phrasing: tuple[str, ...]
    """Every fixed text it writes: sentence templates and phrases (slots as ``{name}``)."""


def generator(name: str) -> Generator:
    """The generator module ``name`` of ``GENERATORS``."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose from {GENERATORS}")
    return importlib.import_module(f"sparse_circuits.editing.{name}").GENERATOR


def data_file(name: str, folder: str | Path) -> Path:
    """The file ``name`` (one of ``FILES``) in ``folder``."""
    if name not in FILES:
        raise ValueError(f"unknown bios file {name!r}; choose from {FILES}")
    return Path(folder) / f"{name}.jsonl"


def name_pool(words: Sequence[str], names: str) -> list[str]:
    """``all`` the words, or every other one: the ``train`` and ``test`` pools are disjoint."""
    if names == "all":
        return list(words)
    if names not in ("train", "test"):
        raise ValueError(f"names must be 'train', 'test' or 'all', not {names!r}")
    return list(words[0 if names == "train" else 1 :: 2])


def with_capitals(slots: dict[str, str]) -> dict[str, str]:
    """``slots`` and, for each lower-case key, its capitalised twin (``he`` -> ``He``), for
    a slot that starts a sentence."""
    out = dict(slots)
    for key, value in slots.items():
        if key.islower() and value:
            out[key[0].upper() + key[1:]] = value[0].upper() + value[1:]
    return out


def split_cells(n: int, split: str) -> list[tuple[int, int]]:
    """``(label, group)`` of each of ``n`` examples of ``split``, before shuffling."""
    if n < 1:
        raise ValueError(f"n must be positive, not {n}")
    if split == "ambiguous":
        if n % 2:
            raise ValueError(f"an ambiguous split needs an even number of examples, not {n}")
        return [(PROFESSOR, MALE)] * (n // 2) + [(NURSE, FEMALE)] * (n // 2)
    if split == "balanced":
        if n % 4:
            raise ValueError(f"a balanced split needs a multiple of 4 examples, not {n}")
        return [(label, group) for label in (1, 0) for group in (1, 0) for _ in range(n // 4)]
    raise ValueError(f"split must be 'ambiguous' or 'balanced', not {split!r}")


def concept_groups(n: int) -> list[tuple[int]]:
    """The group of each of the ``n`` texts of a gender concept set, half each, as keys for
    ``draw_distinct``."""
    if n < 2 or n % 2:
        raise ValueError(f"the gender concept set needs an even number of texts >= 2, not {n}")
    return [(MALE,)] * (n // 2) + [(FEMALE,)] * (n // 2)


def draw_distinct(
    keys: Sequence[tuple[int, ...]],
    make: Callable[[tuple[int, ...]], dict[str, Any]],
    rng: random.Random,
    *,
    exclude: set[str] | frozenset[str] = frozenset(),
    tries: int = 1000,
) -> list[dict[str, Any]]:
    """One example ``make(key)`` per key, each with a ``text`` not drawn before nor in
    ``exclude`` (up to ``tries`` draws each), shuffled by ``rng``."""
    seen: set[str] = set(exclude)
    examples = []
    for key in keys:
        for _ in range(tries):
            example = make(key)
            if example["text"] not in seen:
                break
        else:
            raise ValueError(f"cannot find {len(keys)} distinct texts; ask for fewer")
        seen.add(example["text"])
        examples.append(example)
    rng.shuffle(examples)
    return examples


def write_generated(
    source: Generator,
    folder: str | Path,
    *,
    seed: int = 0,
    n_train: int = 1200,
    n_test: int = 800,
    n_concept: int = 400,
) -> list[Path]:
    """Write ``source``'s ``train.jsonl`` (ambiguous, train names), ``test.jsonl`` (balanced,
    held-out names) and ``gender_concept.jsonl`` into ``folder``, each atomically."""
    sets = {
        "train": source.generate(n_train, split="ambiguous", seed=seed, names="train"),
        "test": source.generate(n_test, split="balanced", seed=seed, names="test"),
        "gender_concept": source.concept(n_concept, seed=seed),
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_text_atomic(data_file(name, folder), "".join(json.dumps(e) + "\n" for e in examples))
        for name, examples in sets.items()
    ]


def read_labelled(
    path: str | Path, *, fields: tuple[str, ...] | list[str] = ("text", "label", "group")
) -> list[dict[str, Any]]:
    """Read a JSONL file of labelled texts, keeping ``fields``: ``text`` must be a non-empty
    string, every other field 0 or 1, and each such field must hold both classes. Every
    problem names the file (and line)."""
    path = Path(path)
    examples = []
    for where, record in jsonl_records(path, BiosError):
        missing = [field for field in fields if field not in record]
        if missing:
            raise BiosError(f"{where}: missing field(s) {missing}")
        for field in fields:
            value = record[field]
            if field == "text":
                if not isinstance(value, str) or not value.strip():
                    raise BiosError(f"{where}: field 'text' must be a non-empty string")
            elif not isinstance(value, int) or isinstance(value, bool) or value not in (0, 1):
                raise BiosError(f"{where}: field {field!r} must be 0 or 1, not {value!r}")
        examples.append({field: record[field] for field in fields})
    if not examples:
        raise BiosError(f"{path}: no examples")
    for field in fields:
        if field != "text" and len({e[field] for e in examples}) < 2:
            raise BiosError(
                f"{path}: needs both classes of {field} (every example has "
                f"{field} = {examples[0][field]})"
            )
    return examples
