"""Subject-verb agreement prompt sets (the Sparse Feature Circuits paper's four templates, after
Finlayson et al. 2021), generated from word lists for a given tokenizer.

| template    | clean prefix (patch: the other number)   | answer agrees with |
|-------------|------------------------------------------|--------------------|
| simple      | The author                               | author             |
| across_pp   | The author near the guards               | author             |
| across_rc   | The author that the guards liked         | author             |
| within_rc   | The author that the guard                | guard              |

Clean and patch prefixes differ only in the number of the noun that decides the answer, so
they have the same token length; half the examples are singular on the clean side. Every word
is kept only if it is one token for the tokenizer (with its leading space), so the answers are
single tokens. Train and test splits use disjoint subject nouns, so the test split is held out.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

__all__ = ["TEMPLATES", "generate_agreement", "write_agreement", "agreement_file"]

TEMPLATES = ("simple", "across_pp", "across_rc", "within_rc")
DATA_DIR = Path(__file__).parent / "agreement"

NOUNS = (
    "author pilot surgeon farmer manager customer officer teacher senator athlete guard dancer "
    "doctor lawyer student parent friend painter writer driver nurse professor player singer "
    "king queen soldier artist boy girl baker banker actor minister judge cook clerk engineer "
    "poet sister brother cousin uncle neighbor captain chef guest host owner pianist"
).split()
PREPOSITIONS = ("near", "behind", "beside", "with", "for", "of", "from", "by")
PAST_VERBS = "liked hated saw met knew helped loved praised admired thanked called visited".split()
PRESENT_VERBS = {
    v + "s": v for v in "like hate see know help love admire meet thank call visit".split()
}
ANSWERS = ((" is", " are"), (" was", " were"), (" has", " have"))
"""(singular, plural) main-verb answers."""


def _one_token(tokenizer: Any, word: str) -> bool:
    return len(tokenizer(" " + word, add_special_tokens=False).input_ids) == 1


def _vocabulary(tokenizer: Any) -> dict[str, Any]:
    nouns = [n for n in NOUNS if _one_token(tokenizer, n) and _one_token(tokenizer, n + "s")]
    present = {
        s: p
        for s, p in PRESENT_VERBS.items()
        if _one_token(tokenizer, s) and _one_token(tokenizer, p)
    }
    answers = [a for a in ANSWERS if all(_one_token(tokenizer, w.strip()) for w in a)]
    if len(nouns) < 6 or not answers or not present:
        raise ValueError("too few single-token words for this tokenizer to build agreement sets")
    return {
        "nouns": nouns,
        "prepositions": [p for p in PREPOSITIONS if _one_token(tokenizer, p)],
        "past": [v for v in PAST_VERBS if _one_token(tokenizer, v)],
        "present": present,
        "answers": answers,
    }


def _example(template: str, subject: str, other: str, words: dict, rng: random.Random):
    """One (clean, patch) pair; the deciding noun is singular on the clean side."""
    if template == "within_rc":
        decider = other
        make = lambda n: f"The {subject}s that the {n}"  # noqa: E731
        singular, plural = rng.choice(list(words["present"].items()))
        answers = (" " + singular, " " + plural)
    else:
        decider = subject
        answers = rng.choice(words["answers"])
        if template == "simple":
            make = lambda n: f"The {n}"  # noqa: E731
        elif template == "across_pp":
            prep = rng.choice(words["prepositions"])
            make = lambda n: f"The {n} {prep} the {other}s"  # noqa: E731
        else:
            verb = rng.choice(words["past"])
            make = lambda n: f"The {n} that the {other}s {verb}"  # noqa: E731
    singular = {"prefix": make(decider), "answer": answers[0]}
    plural = {"prefix": make(decider + "s"), "answer": answers[1]}
    clean, patch = (singular, plural) if rng.random() < 0.5 else (plural, singular)
    return {
        "clean_prefix": clean["prefix"],
        "patch_prefix": patch["prefix"],
        "clean_answer": clean["answer"],
        "patch_answer": patch["answer"],
    }


def generate_agreement(
    tokenizer: Any, template: str, *, n: int = 300, test_fraction: float = 0.3, seed: int = 0
) -> dict[str, list[dict]]:
    """``{"train": [...], "test": [...]}`` examples of one template (deduplicated)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose from {TEMPLATES}")
    rng = random.Random(seed)
    words = _vocabulary(tokenizer)
    nouns = list(words["nouns"])
    rng.shuffle(nouns)
    n_test = max(2, int(len(nouns) * test_fraction))
    splits = {"test": nouns[:n_test], "train": nouns[n_test:]}
    out = {}
    for split, subjects in splits.items():
        pairs = [(s, o) for s, o in itertools.product(subjects, words["nouns"]) if s != o]
        rng.shuffle(pairs)
        wanted = n if split == "train" else max(1, int(n * test_fraction))
        seen, examples = set(), []
        for attempt, (subject, other) in enumerate(itertools.cycle(pairs)):
            if len(examples) >= wanted or attempt > 20 * wanted:
                break
            example = _example(template, subject, other, words, rng)
            key = (example["clean_prefix"], example["clean_answer"])
            if key not in seen:
                seen.add(key)
                examples.append(example)
        out[split] = examples
    return out


def agreement_file(template: str, split: str) -> Path:
    """The shipped prompt set of a template and split (``train`` or ``test``)."""
    return DATA_DIR / f"{template}_{split}.jsonl"


def write_agreement(tokenizer: Any, folder: str | Path = DATA_DIR, **options: Any) -> list[Path]:
    """Regenerate every template's train and test files into ``folder``."""
    from sparse_circuits.files import write_text_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for template in TEMPLATES:
        for split, examples in generate_agreement(tokenizer, template, **options).items():
            lines = "".join(json.dumps(e) + "\n" for e in examples)
            written.append(write_text_atomic(folder / f"{template}_{split}.jsonl", lines))
    return written
