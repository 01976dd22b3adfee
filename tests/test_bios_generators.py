"""The two biography generators of SHIFT: their splits, their variety, and that they share no
phrasing, template or name (develop on one, report on the other)."""

import re
from collections import Counter

import pytest

from sparse_circuits.editing import bios, profiles
from sparse_circuits.editing.biography_sets import (
    GENERATORS,
    data_file,
    generator,
    read_labelled,
)

WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def words_of(text: str) -> list[str]:
    return WORD.findall(text)


@pytest.mark.parametrize("name", GENERATORS)
def test_splits_have_their_cells(name):
    source = generator(name)
    ambiguous = source.generate(400, split="ambiguous", seed=2)
    assert Counter((e["label"], e["group"]) for e in ambiguous) == {(1, 1): 200, (0, 0): 200}
    balanced = source.generate(400, split="balanced", seed=2)
    cells = Counter((e["label"], e["group"]) for e in balanced)
    assert cells == {(1, 1): 100, (1, 0): 100, (0, 1): 100, (0, 0): 100}
    for examples in (ambiguous, balanced):
        assert len({e["text"] for e in examples}) == len(examples)
        assert all(set(e) == {"text", "label", "group"} for e in examples)
    # shuffled: the labels do not come in blocks
    assert len({e["label"] for e in balanced[:20]}) == 2
    assert source.generate(40, split="balanced", seed=2) == source.generate(
        40, split="balanced", seed=2
    )


@pytest.mark.parametrize("name", GENERATORS)
def test_first_name_tells_the_group_and_pools_are_disjoint(name):
    source = generator(name)
    names = {group: set(first) for group, first in source.first_names.items()}
    used = {}
    for pool, split in (("train", "ambiguous"), ("test", "balanced")):
        found = set()
        for e in source.generate(400, split=split, seed=0, names=pool):
            words = set(words_of(e["text"]))
            assert words & names[e["group"]] and not words & names[1 - e["group"]]
            found |= words & (names[0] | names[1])
        used[pool] = found
    assert len(used["train"]) > 60 and len(used["test"]) > 60
    assert not used["train"] & used["test"]


@pytest.mark.parametrize("name", GENERATORS)
def test_concept_set_has_gender_only(name):
    source = generator(name)
    concept = source.concept(200, seed=1)
    assert Counter(e["group"] for e in concept) == {0: 100, 1: 100}
    assert len({e["text"] for e in concept}) == 200
    # no word of any profession cue of either generator is in a concept text
    profession_words = {"professor", "nurse", "lecturer", "hospital", "university", "ward"}
    profession_words |= {"patients", "students", "lab", "shift", "clinic", "academic"}
    for e in concept:
        assert not set(words_of(e["text"])) & profession_words, e["text"]  # ("Ward" is a name)


@pytest.mark.parametrize("name", GENERATORS)
def test_shipped_files_are_the_generators(name):
    source = generator(name)
    train = read_labelled(data_file("train", source.data_dir))
    test = read_labelled(data_file("test", source.data_dir))
    assert train == source.generate(1200, split="ambiguous", seed=0, names="train")
    assert test == source.generate(800, split="balanced", seed=0, names="test")
    concept = read_labelled(data_file("gender_concept", source.data_dir), fields=("text", "group"))
    assert concept == source.concept(400, seed=0)


def five_grams(phrasing):
    """Every run of five words inside the fixed text of ``phrasing`` (not across a slot)."""
    grams = set()
    for text in phrasing:
        for piece in re.split(r"\{[^}]*\}", text):
            words = [w.lower() for w in words_of(piece)]
            grams |= {tuple(words[i : i + 5]) for i in range(len(words) - 4)}
    return grams


def test_generators_share_no_phrasing_and_no_name():
    first, second = generator("bios"), generator("profiles")
    assert not set(first.phrasing) & set(second.phrasing)
    assert five_grams(first.phrasing) and five_grams(second.phrasing)
    assert not five_grams(first.phrasing) & five_grams(second.phrasing)
    first_names = set(first.first_names[0] + first.first_names[1])
    second_names = set(second.first_names[0] + second.first_names[1])
    assert not first_names & second_names
    # nor surnames and places
    proper = set(bios.SURNAMES + bios.CITIES) | first_names
    assert not proper & set(profiles.FAMILY_NAMES + profiles.TOWNS) | second_names & proper


def test_generators_texts_share_no_five_gram_of_their_own_words():
    """On generated texts too: a five-word run of one generator's texts that is also in the
    other's is made of slot values at most (numbers, pronouns), never of template text."""

    def text_grams(examples):
        grams = set()
        for e in examples:
            words = [w.lower() for w in words_of(e["text"])]
            grams |= {tuple(words[i : i + 5]) for i in range(len(words) - 4)}
        return grams

    shared = text_grams(bios.generate_bios(400, split="balanced", seed=5)) & text_grams(
        profiles.generate_profiles(400, split="balanced", seed=5)
    )
    assert not shared


def test_the_development_generator_varies():
    """Three times the templates of its first version (36 sentence patterns, one kind of
    profession cue), every kind of profession cue used, cues in every position, openings on
    life and on work."""
    patterns = [bios.INTROS, bios.FAMILY, bios.LEISURE, *bios.CUES.values()]
    patterns += list(bios.NAMED_WORK.values())
    assert sum(len(p) for p in patterns) >= 3 * 36
    assert len(bios.MALE_NAMES) >= 100 and len(bios.FEMALE_NAMES) >= 100
    examples = bios.generate_bios(800, split="balanced", seed=0)
    kinds, positions, openings = Counter(), Counter(), Counter()
    phrases = {
        kind: {label: phrases for label, phrases in by_label.items()}
        for kind, by_label in bios.CUE_WORDS.items()
    }
    for e in examples:
        sentences = re.split(r"(?<!Mr|Ms)\. ", e["text"])
        for index, sentence in enumerate(sentences):
            for kind, by_label in phrases.items():
                if any(phrase in sentence for phrase in by_label[e["label"]]):
                    kinds[kind] += 1
                    positions[index] += 1
        openings[any(p in sentences[0] for by in phrases.values() for p in by[e["label"]])] += 1
    assert set(kinds) == set(bios.CUES) and min(kinds.values()) > 50
    assert set(positions) == {0, 1, 2, 3}
    assert 0.15 < openings[True] / len(examples) < 0.35  # OPENING_WORK = 0.25


@pytest.mark.parametrize("name", GENERATORS)
def test_gender_shows_beyond_pronouns(name):
    """Most texts carry a gendered word that is neither a pronoun nor a name: a title, a
    relational or a gendered noun of the generator's word list."""
    source = generator(name)
    words_by_group = bios.GENDERED if name == "bios" else profiles.WORDS
    pronouns = {"he", "him", "his", "himself", "she", "her", "herself"}
    examples = source.generate(400, split="balanced", seed=3)
    with_cue = 0
    for e in examples:
        cues = set()
        for value in words_by_group[e["group"]].values():
            for word in value if isinstance(value, tuple) else (value,):
                cues.add(word.rstrip("."))
        cues -= pronouns
        other = set()
        for value in words_by_group[1 - e["group"]].values():
            other |= set(value if isinstance(value, tuple) else (value,))
        words = {w.removesuffix("'s") for w in words_of(e["text"])}
        found = words & (cues - other)
        with_cue += bool(found)
    assert with_cue / len(examples) > 0.6


def test_unknown_generator_and_file():
    with pytest.raises(ValueError, match=r"unknown generator 'news'; choose from \('bios'"):
        generator("news")
    with pytest.raises(ValueError, match="unknown bios file 'dev'"):
        data_file("dev", ".")
    with pytest.raises(ValueError, match="the gender concept set needs an even number"):
        profiles.generate_profile_concept(3)
