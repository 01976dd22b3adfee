"""Synthetic biographies for the SHIFT experiment (Marks et al. 2024, section 4), standing in
for Bias in Bios: classify profession (professor = label 1, nurse = label 0) when gender
(group: 1 male, 0 female) is spuriously correlated with it. The development generator: SHIFT's
choices are tuned on it and reported on ``editing.profiles``, which shares none of its phrasing
or first names (``editing.biography_sets``).

As in real biographies the spurious cue is the more salient one. Gender shows all through a
biography: the first name, a title (Mr/Ms/Mrs), pronouns in nearly every sentence, relational
nouns (son/daughter, brother/sister, husband/wife, father/mother, nephew/niece, godfather/
godmother), gendered nouns (man/woman, schoolboy/schoolgirl, sportsman/sportswoman) and
gendered clubs (a men's choir, a women's rowing club). The profession shows in one or two
sentences only, each of one kind of cue, varied and subtle: a duty ("lectures in pharmacology
at the medical school"), a workplace ("the dialysis unit of the university hospital"), a tool
of the trade ("a box of chalk", "a fob watch pinned to the tunic") or a training ("qualified
after three years of ward placements"); the words *professor* or *nurse* appear in a few of
them only, and several cues cross over (professors teaching anatomy, nurses teaching patients,
nurses at the university hospital).

A biography opens with a sentence that names the person (about their life, or their work),
followed by one to three sentences of work, family and leisure in a random order.

First names and surnames come in two disjoint pools (``names="train"`` / ``"test"``), so a
test split can hold out every name the probe was trained on; sentence patterns are shared.
Everything is deterministic given the seed. ``write_bios`` writes the shipped files:
``train.jsonl`` (ambiguous), ``test.jsonl`` (balanced, held-out names) and
``gender_concept.jsonl`` (short texts in which only gender varies, no profession).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from sparse_circuits.editing.biography_sets import (
    FEMALE,
    MALE,
    NURSE,
    PROFESSOR,
    BiosError,
    Generator,
    concept_groups,
    data_file,
    draw_distinct,
    name_pool,
    read_labelled,
    split_cells,
    with_capitals,
    write_generated,
)

__all__ = [
    "BiosError",
    "DATA_DIR",
    "FEMALE_NAMES",
    "GENERATOR",
    "MALE_NAMES",
    "bios_file",
    "generate_bios",
    "generate_gender_concept",
    "read_labelled",
    "write_bios",
]

DATA_DIR = Path(__file__).parent / "data" / "bios"

# --- word lists -------------------------------------------------------------------------------

MALE_NAMES = (
    "James John Robert Michael William David Richard Joseph Thomas Charles Daniel Matthew "
    "Anthony Mark Steven Paul Andrew Joshua Kenneth Kevin Brian George Edward Ronald Timothy "
    "Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon "
    "Benjamin Samuel Gregory Frank Alexander Patrick Raymond Jack Dennis Jerry Henry Peter "
    "Arthur Walter Harold Douglas Carl Roger Keith Terry Gerald Lawrence Sean Christian Albert "
    "Joe Ethan Bryan Bruce Noah Ralph Roy Eugene Wayne Louis Russell Bobby Philip Johnny Howard "
    "Fred Vincent Martin Curtis Stanley Leonard Dale Craig Alan Shawn Clarence Travis Jeremy "
    "Randy Luke Barry Glenn Neil Trevor Colin Graham Ian Derek Gordon Stuart Duncan Nigel"
).split()
FEMALE_NAMES = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa "
    "Margaret Betty Sandra Ashley Dorothy Kimberly Emily Donna Michelle Carol Amanda Melissa "
    "Deborah Stephanie Rebecca Laura Sharon Cynthia Kathleen Amy Shirley Angela Helen Anna "
    "Brenda Pamela Nicole Emma Samantha Katherine Christine Debra Rachel Catherine Carolyn "
    "Janet Ruth Maria Heather Diane Virginia Julie Joyce Victoria Kelly Christina Lauren Joan "
    "Evelyn Olivia Judith Megan Cheryl Martha Andrea Frances Hannah Jacqueline Gloria Teresa "
    "Ann Kathryn Sara Janice Jean Alice Madison Doris Abigail Julia Judy Grace Denise Amber "
    "Marilyn Beverly Danielle Theresa Sophia Marie Diana Brittany Natalie Isabella Charlotte "
    "Rose Alexis Kayla Lorraine Wendy Gillian Fiona Alison Tracy"
).split()
SURNAMES = (
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Fisher Moore "
    "Jackson Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright "
    "Hayes Hill Green Adams Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell "
    "Parker Evans Edwards Collins Stewart Morris Rogers Reed Cook Morgan Bell Murphy Bailey "
    "Cooper Richardson Cox Ward Peterson Gray Watson Brooks Sanders Price "
    "Bennett Wood Barnes Ross Henderson Coleman Jenkins Perry Powell Long Patterson Hughes "
    "Flores Washington Butler Simmons Foster Bryant Griffin Diaz Myers Ford "
    "Hamilton Sullivan Wallace Woods Cole West Jordan Owens Reynolds Ellis Harrison Gibson "
    "McDonald Cruz Marshall Gomez Murray Freeman Wells Webb Simpson Stevens Tucker Porter "
    "Hunter Hicks Crawford Boyd Mason Morales Kennedy Warren Dixon Ramos Burns Holmes"
).split()
CITIES = (
    "Boston Chicago Denver Seattle Portland Austin Dallas Atlanta Phoenix Detroit Cleveland "
    "Pittsburgh Baltimore Milwaukee Nashville Memphis Louisville Richmond Omaha Tulsa "
    "Sacramento Albany Buffalo Tucson Raleigh Columbus Indianapolis Dayton "
    "Toledo Spokane Boise Anchorage Honolulu Savannah Manchester Leeds Glasgow "
    "Bristol Dublin Toronto Ottawa Melbourne Adelaide Auckland Wellington Cardiff Belfast "
    "Norwich Exeter Halifax Winnipeg Calgary Hobart Perth Brisbane Aberdeen Sheffield"
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
    "keeping bees",
    "brewing cider",
    "kayaking on the river",
    "playing darts at the pub",
    "making pottery",
    "walking the dog along the cliffs",
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
    "darts team",
    "swimming club",
    "rugby team",
    "golf society",
)
PARENT_JOBS = (
    "fisherman baker carpenter farmer shopkeeper postman mechanic plumber miner tailor "
    "taxi-driver electrician builder butcher welder bricklayer gardener printer"
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
    "twin boys",
    "three grown-up daughters",
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
        "nephew": "nephew",
        "godparent": "godfather",
        "gents": "men's",
        "guy": "gentleman",
        "schoolboy": "schoolboy",
        "sportsman": "sportsman",
        "king": "king",
        "widower": "widower",
        "fiance": "fiancee",
        "best": "the best man",
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
        "nephew": "niece",
        "godparent": "godmother",
        "gents": "women's",
        "guy": "lady",
        "schoolboy": "schoolgirl",
        "sportsman": "sportswoman",
        "king": "queen",
        "widower": "widow",
        "fiance": "fiance",
        "best": "the maid of honour",
    },
}

# The cues of the profession, by kind. A duty is a clause in the present tense, third person
# singular; a workplace and a tool are noun phrases; a training is a clause in the past tense.
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
        "sets the final exams in thermodynamics",
        "edits a quarterly journal of art history",
        "teaches evening classes in astronomy to mature students",
        "serves as dean of the faculty of arts",
        "grades term papers late into the night",
        "runs the departmental colloquium on Fridays",
        "teaches microbiology and runs the teaching laboratory",
        "advises the university on its admissions policy",
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
        "sets up drips and monitors heart rhythms through the night",
        "dresses burns at the regional burns unit",
        "takes blood pressures at the village surgery",
        "manages the staff rota of a medical ward",
        "turns and washes bedridden patients to prevent sores",
        "flies with the air ambulance crew",
        "gives flu jabs at the pharmacy on Saturdays",
        "keeps the charts of twenty patients up to date every shift",
    ),
}
WORKPLACES = {
    PROFESSOR: (
        "the chemistry department of a state university",
        "a research institute attached to the university",
        "the faculty of law",
        "a small liberal arts college",
        "the school of engineering",
        "the university's department of classics",
        "a lecture hall in the old quadrangle",
        "the graduate school of economics",
        "the medical school, in its anatomy department",
        "the institute for marine biology",
        "a seminar room in the philosophy building",
        "the department of modern languages",
        "the campus observatory",
        "the university library's rare books room",
        "a laboratory in the biosciences building",
        "the university hospital's research wing",
    ),
    NURSE: (
        "the cardiac ward of the county hospital",
        "an intensive care unit",
        "the children's ward of a city hospital",
        "a community health centre",
        "the maternity unit",
        "a nursing home by the sea",
        "the accident and emergency department",
        "the operating theatres of a private clinic",
        "a hospice on the edge of town",
        "the dialysis unit of the university hospital",
        "the outpatient clinic",
        "a rehabilitation centre for stroke patients",
        "the neonatal unit",
        "the infirmary of a boarding school",
        "the night shift of a surgical ward",
        "a walk-in clinic near the station",
    ),
}
TOOLS = {
    PROFESSOR: (
        "a box of chalk",
        "a red pen for marking essays",
        "a stack of exam scripts",
        "a laser pointer for lectures",
        "a battered copy of the course syllabus",
        "a laptop full of lecture slides",
        "a reading list for the new term",
        "a briefcase of journal articles",
        "the keys to the department's laboratory",
        "a notebook of research ideas",
        "a gown for graduation day",
        "a folder of grant applications",
    ),
    NURSE: (
        "a stethoscope",
        "a fob watch pinned to the tunic",
        "a pair of surgical gloves",
        "a blood pressure cuff",
        "a pocket full of syringes",
        "a clipboard of patient charts",
        "a badge with the ward's name on it",
        "a thermometer and a pen torch",
        "a roll of bandages",
        "a pair of comfortable clogs for long shifts",
        "a pager that buzzes through the night",
        "the keys to the medicine trolley",
    ),
}
TRAININGS = {
    PROFESSOR: (
        "earned a doctorate in medieval history",
        "wrote a thesis on quantum chemistry before joining the faculty",
        "spent six years as a postdoctoral researcher",
        "was awarded tenure after a decade of research",
        "completed a PhD in linguistics",
        "studied mathematics at graduate school and never left academia",
        "trained as an economist at the London School of Economics",
        "won a fellowship to study ancient manuscripts",
        "defended a dissertation on coral reefs",
        "taught as an adjunct lecturer for years before a permanent post",
        "held a research fellowship at Cambridge",
        "studied anatomy as a graduate student",
    ),
    NURSE: (
        "qualified after three years of ward placements",
        "trained at the nursing college in the city",
        "earned a diploma in midwifery",
        "completed a degree in nursing at the university",
        "trained in intensive care after qualifying",
        "passed the nursing board exams at the first attempt",
        "learned to nurse in the army medical corps",
        "took a course in palliative care",
        "started out as a healthcare assistant on a busy ward",
        "trained in paediatric care at the children's hospital",
        "became a registered nurse at twenty-two",
        "studied pharmacology as part of a nursing degree",
    ),
}

# --- sentence patterns ------------------------------------------------------------------------
# Slots: {first} {last} {title} {city} {city2} {age} {years} {ordinal} {a_parent_job} {kids}
# {hobby} {hobby2} {club}, a profession cue ({duty} {workplace} {tool} {training}) and every key
# of GENDERED ({He}/{His} capitalised).

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
    "{first} {last} was a shy {schoolboy} in {city} before moving to {city2}.",
    "Meet {first} {last}, a {age}-year-old {married} and {parent} living in {city}.",
    "{first} {last} is the {ordinal} {child} of {a_parent_job} and grew up near {city}.",
    "{title} {first} {last} is a {parent} of {kids} who lives outside {city}.",
    "Raised by {his} {grand} in {city}, {first} {last} was the first in the family to leave.",
    "{first} {last} is a proud {nephew} of {a_parent_job} and has lived in {city} for years.",
    "Known as {title} {last} to the neighbours, {first} has lived on the same street in {city} "
    "for {years} years.",
    "{first} {last} married {his} childhood sweetheart and settled in {city}.",
    "{first} {last}, a keen {sportsman} in {his} youth, was born in {city}.",
    "A {widower} and {parent} of {kids}, {first} {last} lives quietly in {city}.",
    "{first} {last} met {his} future {spouse} at a dance in {city}.",
    "At {age}, {first} {last} is the oldest {sibling} in a large family from {city}.",
    "{first} {last} grew up above {his} {parent}'s shop in {city}.",
    "{title} {last} is {first} to {his} friends and {sibling} to four others.",
    "{first} {last} moved to {city} with {his} {fiance} a few years ago.",
    "{first} {last} is a {man} of few words who grew up in {city}.",
    "Everyone in {city} seems to know {first} {last}, the {child} of {a_parent_job}.",
    "{first} {last} spent a happy childhood in {city} as the only {boy} among five cousins.",
    "{first} {last}, {age}, is a {parent}, a {godparent} and a {grand}-to-be from {city}.",
    "Now {age}, {first} {last} still lives a short walk from the house in {city} where {he} "
    "was born.",
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
    "For a living, {he} {duty}.",
    "{His} colleagues say {he} {duty} with great patience.",
    "Since moving to {city2}, {first} {duty}.",
    "On a typical Monday {he} {duty}.",
    "{first} {duty} and loves the work.",
    "In {his} working life {he} {duty}.",
)
WORKPLACE = (
    "{He} works at {workplace}.",
    "Most days {first} can be found at {workplace}.",
    "For {years} years {he} has worked at {workplace}.",
    "{His} working day begins early at {workplace}.",
    "{He} took a job at {workplace} after moving to {city2}.",
    "{title} {last} is a familiar face at {workplace}.",
    "{first} spends long hours at {workplace}.",
    "{His} job is at {workplace}, a bus ride from home.",
    "{He} has a post at {workplace} in {city2}.",
    "Colleagues at {workplace} rely on {him}.",
)
TOOL = (
    "{He} never leaves home without {tool}.",
    "{His} bag always holds {tool}.",
    "On {his} desk at work there is always {tool}.",
    "{first} jokes that {his} most important possession is {tool}.",
    "Friends tease {him} about {tool}, which {he} carries everywhere.",
    "{He} keeps {tool} close at hand all week.",
    "Every working day {he} picks up {tool} before heading out.",
    "{His} {spouse} once hid {tool} as a joke, and {he} was lost without it.",
)
TRAINING = (
    "{He} {training}.",
    "Years ago {he} {training}.",
    "Before settling in {city2}, {first} {training}.",
    "As a young {man}, {he} {training}.",
    "{title} {last} {training}.",
    "{first} {training} and has never looked back.",
    "Long before {his} children were born, {he} {training}.",
    "{He} {training}, as {his} {grand} had hoped.",
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
    "{He} is godparent to a friend's baby, a proud {godparent} at every birthday.",
    "{His} {spouse} calls {him} the most patient {man} in {city}.",
    "{He} was {best} at {his} oldest friend's wedding last spring.",
    "{first} is a doting {uncle} to {his} {sibling}'s twins.",
    "{He} looked after {his} mother through a long illness, as the only {child} nearby.",
    "As a {married} of {years} years, {he} still writes {his} {spouse} love letters.",
    "{His} grandchildren call {him} the {king} of bedtime stories.",
    "Each summer {he} takes {his} {kids} to visit {his} {grand} by the sea.",
    "{first} became a {parent} at {age} and says it changed everything.",
    "{He} is the {sibling} everyone in the family calls in a crisis.",
    "{His} {spouse} runs the household accounts, while {he} does the cooking.",
    "{He} has been a {widower} for some years and lives near {his} {kids}.",
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
    "{He} captains the {gents} {club} and is the {king} of the annual quiz night.",
    "On Saturdays {first} plays for a {gents} {club} in {city}.",
    "Weekends are for {hobby}, which {he} took up as a {schoolboy}.",
    "{He} is a competitive {sportsman} who still trains with a {gents} {club}.",
    "{first} unwinds by {hobby} and goes {hobby2} once a month.",
    "{His} great passion is {hobby}, shared with {his} {nephew}.",
    "Once a year {he} goes {hobby2} with old friends from {his} {gents} {club}.",
    "{He} took up {hobby} after {his} {spouse} bought {him} lessons.",
    "When not at work, {he} is usually {hobby}.",
    "{first} has been a member of the {gents} {club} for {years} years.",
    "A lifelong {sportsman}, {he} now prefers {hobby}.",
    "{He} and {his} {sibling} spend every holiday {hobby}.",
)
# Sentences that name the person about their work, by kind of cue: a biography may open with
# one of them.
NAMED_WORK = {
    "duty": (
        "{first} {last} {duty}.",
        "{title} {first} {last} {duty}.",
        "{first} {last}, {age}, {duty}.",
        "At {age}, {first} {last} {duty}.",
        "{first} {last} of {city} {duty}.",
    ),
    "workplace": (
        "{first} {last} works at {workplace}.",
        "{first} {last} has worked at {workplace} for {years} years.",
    ),
    "tool": ("{first} {last} is rarely seen without {tool}.",),
    "training": ("{first} {last} {training}.", "{title} {first} {last} {training}."),
}
CUES = {"duty": WORK, "workplace": WORKPLACE, "tool": TOOL, "training": TRAINING}
"""The sentences of each kind of profession cue."""
CUE_WORDS = {"duty": DUTIES, "workplace": WORKPLACES, "tool": TOOLS, "training": TRAININGS}
OPENING_WORK = 0.25
"""The share of biographies that open on the person's work instead of their life."""

# The gerund hobbies that read naturally after "goes".
_GOING = (
    "hiking in the mountains",
    "fishing at the lake",
    "sailing on the bay",
    "camping",
    "kayaking on the river",
)


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _slots(gender: int, rng: random.Random, first: list[str], last: list[str]) -> dict[str, str]:
    words = GENDERED[gender]
    city, city2 = rng.sample(CITIES, 2)
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
        hobby=rng.choice(HOBBIES),
        hobby2=rng.choice(_GOING),
        club=rng.choice(CLUBS),
    )
    return with_capitals(slots)


def _biography(label: int, group: int, rng: random.Random, first, last) -> str:
    """An opening naming the person (about their life, or their work), then 1 to 3 sentences
    in a random order; one or two sentences in all are profession cues, of different kinds, and
    the rest are about family and leisure."""
    slots = _slots(group, rng, first, last)
    for kind, words in CUE_WORDS.items():
        slots[kind] = rng.choice(words[label])
    n_rest = rng.randint(1, 3)
    kinds = rng.sample(list(CUES), rng.randint(1, min(2, n_rest)))
    opening = rng.choice(INTROS)
    if rng.random() < OPENING_WORK:
        opening = rng.choice(NAMED_WORK[kinds.pop(0)])
    rest = [rng.choice(CUES[kind]) for kind in kinds]
    rest += rng.sample(FAMILY + LEISURE, n_rest - len(rest))
    rng.shuffle(rest)
    return " ".join(s.format(**slots) for s in [opening, *rest])


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
    cells = split_cells(n, split)
    rng = random.Random(f"bios|{split}|{seed}|{names}")
    first = {MALE: name_pool(MALE_NAMES, names), FEMALE: name_pool(FEMALE_NAMES, names)}
    last = name_pool(SURNAMES, names)

    def make(cell: tuple[int, ...]) -> dict[str, Any]:
        label, group = cell
        text = _biography(label, group, rng, first[group], last)
        return {"text": text, "label": label, "group": group}

    return draw_distinct(cells, make, rng, exclude=exclude)


def generate_gender_concept(
    n: int, *, seed: int = 0, names: Literal["train", "test", "all"] = "all"
) -> list[dict[str, Any]]:
    """``n`` short texts ``{"text", "group"}`` (half each gender) with no profession in them:
    an introduction, sometimes followed by a family or leisure sentence."""
    rng = random.Random(f"gender-concept|{seed}|{names}")
    first = {MALE: name_pool(MALE_NAMES, names), FEMALE: name_pool(FEMALE_NAMES, names)}
    last = name_pool(SURNAMES, names)

    def make(key: tuple[int, ...]) -> dict[str, Any]:
        (group,) = key
        slots = _slots(group, rng, first[group], last)
        sentences = [rng.choice(INTROS)]
        if rng.random() < 0.6:
            sentences.append(rng.choice(FAMILY + LEISURE))
        return {"text": " ".join(s.format(**slots) for s in sentences), "group": group}

    return draw_distinct(concept_groups(n), make, rng)


# --- files ------------------------------------------------------------------------------------


def bios_file(name: str, folder: str | Path = DATA_DIR) -> Path:
    """A shipped file: ``train`` (ambiguous), ``test`` (balanced) or ``gender_concept``."""
    return data_file(name, folder)


def write_bios(folder: str | Path = DATA_DIR, **options: int) -> list[Path]:
    """Write ``train.jsonl`` (ambiguous, train names), ``test.jsonl`` (balanced, held-out
    names) and ``gender_concept.jsonl`` into ``folder``, each atomically; ``options``: ``seed``,
    ``n_train``, ``n_test``, ``n_concept`` of ``biography_sets.write_generated``."""
    return write_generated(GENERATOR, folder, **options)


def _phrasing() -> tuple[str, ...]:
    lists = [INTROS, WORK, WORKPLACE, TOOL, TRAINING, FAMILY, LEISURE, *NAMED_WORK.values()]
    lists += [HOBBIES, CLUBS, KIDS, _GOING]
    lists += [words[label] for words in CUE_WORDS.values() for label in (PROFESSOR, NURSE)]
    return tuple(text for texts in lists for text in texts)


GENERATOR = Generator(
    generate=generate_bios,
    concept=generate_gender_concept,
    data_dir=DATA_DIR,
    first_names={MALE: tuple(MALE_NAMES), FEMALE: tuple(FEMALE_NAMES)},
    phrasing=_phrasing(),
)
