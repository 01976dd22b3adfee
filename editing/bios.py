"""Synthetic biographies for the SHIFT experiment (Marks et al. 2024, section 4), standing in
for Bias in Bios: classify profession (professor = label 1, nurse = label 0) when gender
(group: 1 male, 0 female) is spuriously correlated with it.

As in real biographies the spurious cue is the more salient one. Gender shows all through a
biography: the first name, a title (Mr/Ms/Mrs), pronouns in nearly every sentence, the person's
family role (son/daughter, brother/sister, husband/wife, father/mother, grandfather/grandmother)
and gendered clubs (a men's choir, a women's rowing club). The profession shows in one clause
only, which is varied and subtle: a workplace, a department or a duty ("lectures in
pharmacology at the medical school", "works on the dialysis unit of the university hospital"),
the words *professor* or *nurse* appearing in a few of them only; several cues cross over
(professors teaching anatomy, nurses teaching patients, nurses at the university hospital).

Splits:

- ``ambiguous``: profession and gender perfectly correlated (every professor male, every
  nurse female), half of each;
- ``balanced``: the four (label, group) cells equally large.

First names and surnames come in two disjoint pools (``names="train"`` / ``"test"``), so a
test split can hold out every name the probe was trained on; sentence patterns are shared.
Everything is deterministic given the seed. ``write_bios`` writes the shipped files:
``train.jsonl`` (ambiguous), ``test.jsonl`` (balanced, held-out names) and
``gender_concept.jsonl`` (short texts in which only gender varies, no profession: the concept
set against which the automatic SHIFT judge tests whether a feature is about gender).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from sparse_circuits.files import jsonl_records

__all__ = [
    "BiosError",
    "DATA_DIR",
    "bios_file",
    "generate_bios",
    "generate_gender_concept",
    "read_labelled",
    "write_bios",
]

DATA_DIR = Path(__file__).parent / "data" / "bios"
PROFESSOR, NURSE = 1, 0
MALE, FEMALE = 1, 0


class BiosError(ValueError):
    """A labelled data file or example that cannot be used; the message names file and line."""


# --- word lists -------------------------------------------------------------------------------

MALE_NAMES = (
    "James John Robert Michael William David Richard Joseph Thomas Charles Daniel Matthew "
    "Anthony Mark Steven Paul Andrew Joshua Kenneth Kevin Brian George Edward Ronald Timothy "
    "Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon "
    "Benjamin Samuel Gregory Frank Alexander Patrick Raymond Jack Dennis Jerry Henry Peter "
    "Arthur Walter Harold Douglas Carl Roger Keith"
).split()
FEMALE_NAMES = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa "
    "Margaret Betty Sandra Ashley Dorothy Kimberly Emily Donna Michelle Carol Amanda Melissa "
    "Deborah Stephanie Rebecca Laura Sharon Cynthia Kathleen Amy Shirley Angela Helen Anna "
    "Brenda Pamela Nicole Emma Samantha Katherine Christine Debra Rachel Catherine Carolyn "
    "Janet Ruth Maria Heather Diane Virginia Julie Joyce Victoria"
).split()
SURNAMES = (
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Fisher Moore "
    "Martin Jackson Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright "
    "Hayes Hill Green Adams Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell "
    "Parker Evans Edwards Collins Stewart Morris Rogers Reed Cook Morgan Bell Murphy Bailey "
    "Cooper Richardson Cox Howard Ward Peterson Gray Graham Watson Brooks Kelly Sanders Price "
    "Bennett Wood Barnes Ross Henderson Coleman Jenkins Perry Powell Long Patterson Hughes"
).split()
CITIES = (
    "Boston Chicago Denver Seattle Portland Austin Dallas Atlanta Phoenix Detroit Cleveland "
    "Pittsburgh Baltimore Milwaukee Nashville Memphis Louisville Richmond Omaha Tulsa "
    "Sacramento Albany Buffalo Madison Tucson Raleigh Charlotte Columbus Indianapolis Dayton "
    "Toledo Spokane Boise Anchorage Honolulu Savannah Charleston Manchester Leeds Glasgow "
    "Bristol Dublin Toronto Ottawa Melbourne Adelaide Auckland Wellington"
).split()
HOBBIES = (
    "hiking in the mountains",
    "baking bread",
    "playing chess",
    "restoring old bicycles",
    "growing tomatoes",
    "watching old films",
    "fishing at the lake",
    "painting watercolours",
    "running half marathons",
    "playing the piano",
    "birdwatching",
    "reading crime novels",
    "sailing on the bay",
    "collecting vinyl records",
    "doing crossword puzzles",
    "camping with friends",
    "playing tennis",
    "cooking Thai food",
    "learning Italian",
    "building model trains",
    "swimming in the sea",
    "gardening",
    "playing the guitar",
    "photographing old buildings",
    "cycling along the river",
    "knitting",
    "woodworking",
    "playing board games",
    "travelling abroad",
    "volunteering at the animal shelter",
)
CLUBS = (
    "choir",
    "rowing club",
    "book club",
    "football team",
    "cycling club",
    "walking group",
    "cricket team",
    "hockey team",
    "bowling league",
    "running club",
)
PARENT_JOBS = (
    "fisherman baker carpenter farmer shopkeeper postman mechanic plumber miner tailor "
    "taxi-driver electrician builder butcher"
).split()
ORDINALS = ("eldest", "youngest", "second", "third", "middle")
KIDS = (
    "two sons",
    "a daughter",
    "three children",
    "twin daughters",
    "a son and a daughter",
    "two young children",
    "a teenage son",
    "four children",
)

# Gendered words about the person (their gender is the group).
GENDERED = {
    MALE: {
        "he": "he",
        "him": "him",
        "his": "his",
        "himself": "himself",
        "title": ("Mr", "Mr."),
        "man": "man",
        "boy": "boy",
        "child": "son",
        "sibling": "brother",
        "spouse": "wife",
        "married": "husband",
        "parent": "father",
        "grand": "grandfather",
        "uncle": "uncle",
        "gents": "men's",
        "guy": "gentleman",
    },
    FEMALE: {
        "he": "she",
        "him": "her",
        "his": "her",
        "himself": "herself",
        "title": ("Ms", "Ms.", "Mrs"),
        "man": "woman",
        "boy": "girl",
        "child": "daughter",
        "sibling": "sister",
        "spouse": "husband",
        "married": "wife",
        "parent": "mother",
        "grand": "grandmother",
        "uncle": "aunt",
        "gents": "women's",
        "guy": "lady",
    },
}

# What the person does at work: one clause, present tense, third person singular.
DUTIES = {
    PROFESSOR: (
        "teaches organic chemistry to first-year undergraduates",
        "runs a small research group in the physics department",
        "supervises doctoral students writing theses on medieval trade",
        "lectures on macroeconomics at the state university",
        "holds a chair in comparative literature",
        "marks seminar essays and advises graduate students",
        "publishes papers on number theory",
        "leads a laboratory that studies bird migration",
        "teaches a seminar on political philosophy every autumn",
        "sits on the faculty senate of a small liberal arts college",
        "directs the graduate programme in linguistics",
        "writes textbooks on fluid mechanics and teaches engineering courses",
        "examines dissertations in the history department",
        "holds office hours for students in the mathematics building",
        "is on the faculty of the law school",
        "gives lectures on ancient Greek drama",
        "applies for research grants and mentors postdoctoral fellows",
        "teaches statistics in the school of public health",
        "is a professor of sociology",
        "is a tenured professor of geology",
        "studies volcanic rocks and takes geology majors on field trips",
        "reviews manuscripts for academic journals and teaches biochemistry",
        "chairs the department of computer science",
        "teaches anatomy to medical students at the university",
        "lectures in pharmacology at the medical school",
        "works at the university, teaching courses on public health",
        "spends the semester teaching and the summer doing fieldwork",
        "teaches philosophy at a small college",
    ),
    NURSE: (
        "works night shifts on the cardiac ward of the county hospital",
        "cares for patients in the intensive care unit",
        "checks vital signs and gives out medication on a busy surgical ward",
        "works in the emergency department of a city hospital",
        "assists surgeons in the operating theatre",
        "visits elderly patients at home as part of a community care team",
        "looks after newborn babies in the maternity unit",
        "changes dressings and watches over patients recovering from surgery",
        "works at the children's hospital, caring for young patients",
        "runs the vaccination clinic at a local health centre",
        "is a registered nurse in the oncology unit",
        "works as a nurse in a care home",
        "draws blood and prepares patients for procedures at the outpatient clinic",
        "works on the dialysis unit of the university hospital",
        "trains new staff in the hospital's infection control rules",
        "cares for people recovering from strokes at a rehabilitation centre",
        "works in a school infirmary, treating pupils' scrapes and fevers",
        "staffs the triage desk of the accident and emergency department",
        "cares for the dying at the local hospice",
        "watches over patients in the recovery room after anaesthesia",
        "works twelve-hour shifts at the trauma centre",
        "helps the midwives on the labour ward",
        "does the medication rounds on the geriatric ward",
        "works on the psychiatric ward, supporting patients through crises",
        "teaches patients with diabetes how to manage their insulin",
        "works at the university hospital, caring for patients after heart surgery",
        "spends the week on the ward and the weekend on call",
        "tends to patients at a small clinic",
    ),
}

# --- sentence patterns ------------------------------------------------------------------------
# Slots: {first} {last} {title} {city} {city2} {age} {years} {ordinal} {a_parent_job} {kids}
# {hobby} {hobby2} {club} {duty} and every key of GENDERED ({He}/{His} capitalised).

INTROS = (
    "{first} {last} grew up in {city} as the {ordinal} {child} of {a_parent_job}.",
    "Born in {city}, {first} {last} is the only {child} of {a_parent_job} from the coast.",
    "{title} {last}, known to {his} friends as {first}, moved to {city} as a young {man}.",
    "{first} {last} is a {age}-year-old {man} from {city}.",
    "{first} {last} lives in {city} with {his} {spouse} and {kids}.",
    "As a {boy} in {city}, {first} {last} spent every summer on {his} {grand}'s farm.",
    "{first} {last}, the {ordinal} {child} of {his} parents, was raised in {city}.",
    "{title} {first} {last} has called {city} home since {he} was a little {boy}.",
    "{first} {last} is a {married}, a {parent} and a {sibling}, and {he} lives in {city}.",
    "When {first} {last} was a {boy}, {his} family moved from {city} to {city2}.",
)
WORK = (
    "{He} {duty}.",
    "These days {he} {duty}.",
    "Most weekdays {first} {duty}.",
    "{first} now {duty}.",
    "Professionally, {he} {duty}.",
    "After {his} studies {he} settled in {city2}, where {he} {duty}.",
    "At work, {title} {last} {duty}.",
    "{He} {duty}, something {he} has done for {years} years.",
    "Today {first} lives in {city2} and {duty}.",
    "By day {he} {duty}.",
)
FAMILY = (
    "{He} and {his} {spouse} have {kids}, and {he} is a devoted {parent}.",
    "{first} is the {parent} of {kids} and the proud {sibling} of three.",
    "{His} {spouse} and {his} children say {he} is the best cook in the family.",
    "{He} is a {married} and a {parent} of {kids}.",
    "{He} visits {his} elderly parents every Sunday, as a good {child} should.",
    "Every winter {he} hosts {his} brothers and sisters and all their children.",
    "{His} {spouse} often jokes that {he} is a {parent} first and everything else second.",
    "{title} {last} is also a {grand} of five and a favourite {uncle} to many.",
)
LEISURE = (
    "In {his} spare time {he} enjoys {hobby}.",
    "{He} also sings in a {gents} choir and loves {hobby}.",
    "{He} belongs to a {gents} {club} and goes {hobby2} with {his} {spouse} on weekends.",
    "{first} is a keen member of the local {gents} {club}.",
    "Outside work, {he} loves {hobby} with {his} {spouse}.",
    "{He} spends {his} free evenings {hobby}, usually with {his} children.",
    "{His} friends know {him} as a {guy} who never says no to {hobby}.",
    "{He} describes {himself} as a quiet {man} who enjoys {hobby}.",
)
# Sentences after the introduction, in order, for a biography of 2 to 4 sentences.
SHAPES = (
    ("work",),
    ("work", "family"),
    ("work", "leisure"),
    ("family", "work"),
    ("leisure", "work"),
    ("work", "family", "leisure"),
    ("family", "work", "leisure"),
    ("family", "leisure", "work"),
    ("leisure", "family", "work"),
)
PATTERNS = {"family": FAMILY, "leisure": LEISURE, "work": WORK}

# The gerund hobbies that read naturally after "goes".
_GOING = ("hiking in the mountains", "fishing at the lake", "sailing on the bay", "camping")


def _pool(words: list[str] | tuple[str, ...], names: str) -> list[str]:
    """Every other word: the ``train`` and ``test`` pools are disjoint."""
    if names == "all":
        return list(words)
    if names not in ("train", "test"):
        raise ValueError(f"names must be 'train', 'test' or 'all', not {names!r}")
    return list(words[0 if names == "train" else 1 :: 2])


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _capitalise_slots(slots: dict[str, str]) -> dict[str, str]:
    out = dict(slots)
    for key, value in slots.items():
        if value and key.islower():
            out[key[0].upper() + key[1:]] = value[0].upper() + value[1:]
    return out


def _slots(gender: int, rng: random.Random, first: list[str], last: list[str]) -> dict[str, str]:
    words = GENDERED[gender]
    city, city2 = rng.sample(CITIES, 2)
    hobby = rng.choice(HOBBIES)
    slots = {key: value for key, value in words.items() if isinstance(value, str)}
    slots.update(
        first=rng.choice(first),
        last=rng.choice(last),
        title=rng.choice(words["title"]),
        city=city,
        city2=city2,
        age=str(rng.randint(28, 64)),
        years=str(rng.randint(3, 25)),
        ordinal=rng.choice(ORDINALS),
        a_parent_job=_article(rng.choice(PARENT_JOBS)),
        kids=rng.choice(KIDS),
        hobby=hobby,
        hobby2=rng.choice(_GOING),
        club=rng.choice(CLUBS),
    )
    return _capitalise_slots(slots)


def _biography(label: int, group: int, rng: random.Random, first, last) -> str:
    slots = _slots(group, rng, first, last)
    slots["duty"] = rng.choice(DUTIES[label])
    sentences = [rng.choice(INTROS)]
    for part in rng.choice(SHAPES):
        sentences.append(rng.choice(PATTERNS[part]))
    return " ".join(s.format(**slots) for s in sentences)


def _cells(n: int, split: str) -> list[tuple[int, int]]:
    """``(label, group)`` of each example before shuffling."""
    if split == "ambiguous":
        if n % 2:
            raise ValueError(f"an ambiguous split needs an even number of examples, not {n}")
        return [(PROFESSOR, MALE)] * (n // 2) + [(NURSE, FEMALE)] * (n // 2)
    if split == "balanced":
        if n % 4:
            raise ValueError(f"a balanced split needs a multiple of 4 examples, not {n}")
        return [(label, group) for label in (1, 0) for group in (1, 0) for _ in range(n // 4)]
    raise ValueError(f"split must be 'ambiguous' or 'balanced', not {split!r}")


def generate_bios(
    n: int,
    *,
    split: Literal["ambiguous", "balanced"],
    seed: int = 0,
    names: Literal["train", "test", "all"] = "all",
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """``n`` distinct biographies ``{"text", "label", "group"}``, shuffled.

    ``names`` chooses the pool of first names and surnames (``train`` and ``test`` are
    disjoint); texts in ``exclude`` are never produced.
    """
    if n < 1:
        raise ValueError(f"n must be positive, not {n}")
    rng = random.Random(f"bios|{split}|{seed}|{names}")
    first = {MALE: _pool(MALE_NAMES, names), FEMALE: _pool(FEMALE_NAMES, names)}
    last = _pool(SURNAMES, names)
    seen: set[str] = set(exclude)
    examples = []
    for label, group in _cells(n, split):
        for _ in range(1000):
            text = _biography(label, group, rng, first[group], last)
            if text not in seen:
                break
        else:
            raise ValueError(f"cannot find {n} distinct biographies; ask for fewer")
        seen.add(text)
        examples.append({"text": text, "label": label, "group": group})
    rng.shuffle(examples)
    return examples


def generate_gender_concept(
    n: int, *, seed: int = 0, names: Literal["train", "test", "all"] = "all"
) -> list[dict[str, Any]]:
    """``n`` short texts ``{"text", "group"}`` (half each gender) with no profession in them:
    an introduction, sometimes followed by a family or leisure sentence."""
    if n < 2 or n % 2:
        raise ValueError(f"the gender concept set needs an even number of texts >= 2, not {n}")
    rng = random.Random(f"gender-concept|{seed}|{names}")
    first = {MALE: _pool(MALE_NAMES, names), FEMALE: _pool(FEMALE_NAMES, names)}
    last = _pool(SURNAMES, names)
    seen: set[str] = set()
    examples = []
    for group in [MALE] * (n // 2) + [FEMALE] * (n // 2):
        for _ in range(1000):
            slots = _slots(group, rng, first[group], last)
            sentences = [rng.choice(INTROS)]
            if rng.random() < 0.6:
                sentences.append(rng.choice(FAMILY + LEISURE))
            text = " ".join(s.format(**slots) for s in sentences)
            if text not in seen:
                break
        else:
            raise ValueError(f"cannot find {n} distinct concept texts; ask for fewer")
        seen.add(text)
        examples.append({"text": text, "group": group})
    rng.shuffle(examples)
    return examples


# --- files ------------------------------------------------------------------------------------

FILES = ("train", "test", "gender_concept")


def bios_file(name: str, folder: str | Path = DATA_DIR) -> Path:
    """A shipped file: ``train`` (ambiguous), ``test`` (balanced) or ``gender_concept``."""
    if name not in FILES:
        raise ValueError(f"unknown bios file {name!r}; choose from {FILES}")
    return Path(folder) / f"{name}.jsonl"


def write_bios(
    folder: str | Path = DATA_DIR,
    *,
    seed: int = 0,
    n_train: int = 1200,
    n_test: int = 800,
    n_concept: int = 400,
) -> list[Path]:
    """Write ``train.jsonl`` (ambiguous, train names), ``test.jsonl`` (balanced, held-out
    names) and ``gender_concept.jsonl`` into ``folder``, each atomically."""
    from sparse_circuits.files import write_text_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = generate_bios(n_train, split="ambiguous", seed=seed, names="train")
    test = generate_bios(n_test, split="balanced", seed=seed, names="test")
    concept = generate_gender_concept(n_concept, seed=seed)
    written = []
    for name, examples in (("train", train), ("test", test), ("gender_concept", concept)):
        lines = "".join(json.dumps(e) + "\n" for e in examples)
        written.append(write_text_atomic(bios_file(name, folder), lines))
    return written


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
