"""A second, independent generator of SHIFT data: a host introduces a guest (a radio show, a
podcast, a community evening), and the guest speaks about their life in the first person.
SHIFT's choices are tuned on ``editing.bios``; this generator is where they are reported, so it
shares none of that generator's templates, phrases, first names, surnames or places (tested).

The labels are those of ``editing.biography_sets``: profession (an academic = label 1, a nurse =
label 0) and gender (group 1 male, 0 female), spuriously correlated in the ambiguous split.
Gender is again the salient cue, carried by other words than in ``editing.bios``: the first
name, the host's pronouns and honorific (Mr/Mrs/Miss), and kinship and gendered nouns a host or a
guest would use (dad/mum, grandpa/grandma, stepson/stepdaughter, boyfriend/girlfriend,
groom/bride, lad/lass, one of five brothers/sisters). The profession shows in one or two
sentences, each of one kind of cue: what the guest does at work, said in the first person
("I run a lab that models glaciers"), where the host has just come from ("straight from the
neonatal unit"), what the guest carries ("a lanyard with a pager on it") or how the guest got
there ("after a master's in epidemiology"); the words *lecturer* or *nurse* appear in a few
cues only and some cross over (academics researching hospital infections, nurses teaching new
graduates).

A text opens with the host naming the guest, then one to three sentences in a random order:
the profession cues and the guest's talk of family and free time, in quotes or reported.
``write_profiles`` writes the shipped ``train.jsonl`` (ambiguous, one half of the names),
``test.jsonl`` (balanced, the other half) and ``gender_concept.jsonl`` (introductions and
family or free-time talk, no profession) into ``editing/data/profiles``.
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
    Generator,
    concept_groups,
    draw_distinct,
    name_pool,
    split_cells,
    with_capitals,
    write_generated,
)

__all__ = [
    "DATA_DIR",
    "GENERATOR",
    "generate_profile_concept",
    "generate_profiles",
    "write_profiles",
]

DATA_DIR = Path(__file__).parent / "data" / "profiles"

GIVEN = {
    MALE: (
        "Ahmed Kwame Tobias Lorenzo Mateo Henrik Soren Dmitri Rafael Ignacio Oskar Felix Hugo "
        "Emil Anton Bastian Casimir Desmond Everett Fergus Gideon Horace Ivo Jasper Lucian Magnus "
        "Nikolai Orlando Percival Quentin Rupert Silas Thaddeus Ulrich Wendell Xavier Yusuf "
        "Zoltan Ambrose Barnaby Cedric Dorian Elias Florian Giles Hector Idris Julius Kofi "
        "Leopold Malcolm Otto Pascal Reuben Tariq Viktor Wilhelm Aurelio Benedikt Cormac Dario "
        "Emeka Fabian Gustav Hamish Imran Jonas Kasper Lars Mikkel Niall Osvaldo Piotr Rashid "
        "Sebastiano Tomasz Umberto Vasco Wolfgang Yannick Zachariah Alistair Bertrand Caspar "
        "Declan Ezra Finnegan Gareth Hamid Ilya Jarrah Kenji Lachlan Mortimer Nils Olaf Rhys"
    ).split(),
    FEMALE: (
        "Amara Beatrix Celeste Delphine Esme Freya Greta Hazel Ingrid Juno Kaveri Leonie Matilda "
        "Nadia Ophelia Priya Rosalind Sabine Tamsin Ursula Vivienne Wilhelmina Ximena Yasmin "
        "Zara Annika Brigitta Camille Dagny Elodie Fenella Giselle Henrietta Imogen Jolanta Katya "
        "Lucinda Marisol Noor Odette Petra Rosalie Saoirse Thea Valentina Winifred Yvette Zofia "
        "Adaeze Bettina Clementine Dolores Eloise Flavia Ghislaine Honora Isadora Jemima Kirsten "
        "Liesel Magdalena Nanette Orla Paloma Querida Rhiannon Sigrid Tatiana Ulrike Verity "
        "Wanda Xanthe Ysolde Zuzanna Agnieszka Bronwen Carys Dervla Elspeth Frederica Gwendolyn "
        "Hermione Ilse Jadwiga Kalinda Lavinia Mirela Niamh Octavia Perpetua Rosamund Svetlana"
    ).split(),
}
FAMILY_NAMES = (
    "Okafor Lindqvist Moreau Castellano Nakamura Brennan Fitzgerald Haddad Kowalski Varga "
    "Delacroix Abernathy Oyelaran Rasmussen Quigley Szabo Thorne Vasquez Whitcombe Yilmaz "
    "Zielinski Achterberg Bellweather Cavendish Dunmore Eriksen Fairbanks Galloway Hargreaves "
    "Ibarra Jablonski Kettering Lombardi Mendoza Novak Ortega Pemberton Quintero Rosenthal "
    "Sorensen Trevelyan Underwood Valente Winterbottom Yeoman Zamora Ashdown Blackwood "
    "Cortese Drummond Esposito Farrow Gutierrez Holloway Iverson Kaminski Lockhart Mulligan "
    "Nakashima Ostrowski Petrakis Radcliffe Salazar Tanaka Urquhart Vickers Wainwright "
    "Albescu Brandt Chakraborty Dimitriou Engstrom Falcone Grunwald Halvorsen"
).split()
TOWNS = (
    "Galway Bergen Lyon Porto Graz Utrecht Turku Tromso Bruges Krakow Seville Bologna Ghent "
    "Aarhus Lucerne Salzburg Tallinn Riga Vilnius Ljubljana Zagreb Split Cork Limerick "
    "Inverness Dundee Swansea Truro Penzance Whitby Kendal Durham Carlisle Harrogate Ludlow "
    "Hereford Bangor Stirling Oban Kilkenny Sligo Mackay Cairns Darwin Napier Dunedin Nanaimo "
    "Kelowna Moncton"
).split()

# Gendered words about the guest (their gender is the group).
WORDS = {
    MALE: {
        "they": "he",
        "them": "him",
        "their": "his",
        "honorific": ("Mr", "Mister"),
        "lad": "lad",
        "dad": "dad",
        "grandpa": "grandpa",
        "stepchild": "stepson",
        "partner": "wife",
        "date": "girlfriend",
        "groom": "groom",
        "siblings": "brothers",
        "kin": "brother",
        "bloke": "bloke",
        "fellow": "fellow",
        "lads": "lads",
    },
    FEMALE: {
        "they": "she",
        "them": "her",
        "their": "her",
        "honorific": ("Mrs", "Miss"),
        "lad": "lass",
        "dad": "mum",
        "grandpa": "grandma",
        "stepchild": "stepdaughter",
        "partner": "husband",
        "date": "boyfriend",
        "groom": "bride",
        "siblings": "sisters",
        "kin": "sister",
        "bloke": "woman",
        "fellow": "gal",
        "lads": "girls",
    },
}
SPORTS = (
    "five-a-side football",
    "water polo",
    "bouldering",
    "ultimate frisbee",
    "table tennis",
    "badminton",
    "netball",
    "open-water swimming",
    "fell running",
    "curling",
    "squash",
    "orienteering",
)
PASTIMES = (
    "fixing up an old camper van",
    "foraging for mushrooms",
    "learning the cello",
    "writing terrible poetry",
    "restoring vintage radios",
    "making jam",
    "growing chillies on the balcony",
    "sketching in cafes",
    "tinkering with motorbikes",
    "practising karate",
    "keeping chickens",
    "going to the opera",
    "playing the accordion",
    "doing jigsaws",
    "stargazing",
    "embroidery",
)

# The profession cues, by kind: a first-person clause ("I ..."), a place the guest comes from,
# a thing the guest carries, and a road into the job (after ...).
ROLES = {
    PROFESSOR: (
        "run a lab that models glaciers",
        "teach the introductory course in econometrics",
        "write about Byzantine mosaics on sabbatical",
        "go up for tenure review in the spring",
        "have three grant proposals due by Friday",
        "supervise a dozen doctoral candidates",
        "gave the keynote at a conference on Roman law last month",
        "am rewriting the syllabus for my course on Victorian poetry",
        "spend my mornings in the archive and my afternoons in the lecture theatre",
        "lead a research team simulating dark matter on supercomputers",
        "advise undergraduates choosing their majors",
        "teach calculus to freshmen and love every minute",
        "am finishing a monograph on the French Revolution",
        "co-authored a paper on coral genetics last year",
        "sit on the hiring committee of my faculty",
        "teach a course on medical ethics to future doctors",
        "research how infections spread inside hospitals",
        "am a lecturer in art history",
        "referee articles for two physics journals",
        "mark a hundred midterm scripts every autumn",
        "give tutorials on Kant to second-year students",
        "run the summer school in field archaeology",
        "edit the faculty's working paper series",
        "hold a research chair in sociolinguistics",
    ),
    NURSE: (
        "do twelve-hour nights in paediatric intensive care",
        "spend my days at the bedside of premature babies",
        "chart vitals and hang drips for twenty people a shift",
        "am the charge nurse on an orthopaedic ward",
        "do wound care for people in their own homes",
        "prep people for angiograms in the cath lab",
        "cover four villages as a district nurse",
        "triage walk-ins at an urgent care centre",
        "wear scrubs more often than my own clothes",
        "look after people on a cancer ward",
        "plan discharges for frail elderly people",
        "work in a dementia unit",
        "take blood and put in cannulas all day",
        "count the instruments before and after every operation in theatre",
        "run the six o'clock medicine round",
        "hold people's hands before they go into surgery",
        "keep people comfortable at the end of their lives in a hospice",
        "teach the newly qualified graduates on our ward",
        "give chemotherapy in a day unit",
        "answer the call bells on a busy stroke ward",
        "check the fluid balance charts every hour on the renal ward",
        "help mothers learn to breastfeed on the postnatal ward",
        "stitch up cuts in a minor injuries unit",
        "monitor ventilated patients in the high dependency unit",
    ),
}
SETTINGS = {
    PROFESSOR: (
        "a faculty meeting",
        "the history archive",
        "an afternoon of lectures",
        "the physics laboratory",
        "a thesis defence",
        "the campus library",
        "a seminar on game theory",
        "an exam board",
        "a department away day",
        "a lecture on plate tectonics",
        "the philosophy faculty",
        "a conference in Vienna",
        "the linguistics lab",
        "a graduation ceremony in full academic dress",
    ),
    NURSE: (
        "a night shift",
        "the special care baby unit",
        "a long day on the wards",
        "the children's intensive care unit",
        "a shift in accident and emergency",
        "the district nursing office",
        "the oncology day unit",
        "a double shift",
        "the stroke ward",
        "the minor injuries unit",
        "a handover on the surgical ward",
        "the hospice",
        "the renal unit",
        "a week of nights in theatre recovery",
    ),
}
KITS = {
    PROFESSOR: (
        "a satchel of ungraded essays",
        "a dog-eared copy of a journal",
        "a lanyard from an academic conference",
        "a tote bag full of library books",
        "a marked-up draft of a research paper",
        "a box of whiteboard markers",
        "a stack of student dissertations",
        "a laptop covered in equations",
        "a thermos and a pile of manuscripts",
        "a folder of lecture notes",
    ),
    NURSE: (
        "a fob watch on the lapel",
        "a lanyard with a pager on it",
        "a pen torch and a pocket notebook of obs",
        "a pair of trauma shears",
        "a tourniquet in a top pocket",
        "a hand sanitiser clipped to a belt",
        "a bundle of drug charts",
        "a pocket full of alcohol wipes",
        "a name badge that reads staff nurse",
        "a pair of compression socks for the shift",
    ),
}
PATHS = {
    PROFESSOR: (
        "a doctorate on Icelandic sagas",
        "ten years as a postdoc in three countries",
        "a PhD in evolutionary biology",
        "a master's in epidemiology and a doctorate in statistics",
        "years of temporary lecturing contracts",
        "a fellowship in Heidelberg",
        "a thesis on the economics of fisheries",
        "a doctorate in organic synthesis",
        "a research post at a national laboratory",
        "a first degree in classics and a PhD in ancient philosophy",
    ),
    NURSE: (
        "a nursing degree and a year on a surgical rotation",
        "training as a healthcare assistant",
        "a diploma in children's nursing",
        "years as a care worker",
        "an apprenticeship in adult nursing",
        "a postgraduate course in critical care",
        "qualifying as a mental health nurse",
        "a placement on a busy medical admissions unit",
        "a course in tissue viability",
        "night school and a nursing access course",
    ),
}

# --- templates ---------------------------------------------------------------------------------
# Slots: {given} {family} {honorific} {town} {town2} {age} {n} {sport} {pastime}, a profession cue
# ({role} {setting} {kit} {path}) and every key of WORDS ({They}/{Their} capitalised).

WELCOMES = (
    "Tonight on the programme we welcome {given} {family} from {town}.",
    "Please give a warm welcome to {given} {family}.",
    "Our next guest, {given} {family}, comes to us from {town}.",
    "Joining the panel this week is {given} {family}, a {dad} of {n} from {town}.",
    "I'm delighted to introduce {given} {family}, a {town} {lad} born and bred.",
    "With us in the studio is {honorific} {family}, or {given}, as {they} insists we call {them}.",
    "Say hello to {given} {family}, who drove down from {town} this morning.",
    "Our guest of honour is {given} {family}, {age}, a {grandpa} of {n}.",
    "Next up, a {bloke} many of you will know from the {town} market: {given} {family}.",
    "It's a pleasure to have {given} {family} on the show at last.",
    "First tonight, {given} {family}, one of {n} {siblings} from {town}.",
    "Welcome back to the podcast; my guest is {given} {family}.",
    "Sitting across from me is {honorific} {given} {family}, a proud {dad} and {grandpa}.",
    "This evening's speaker is {given} {family}, who moved to {town} last year.",
    "Let's hear it for {given} {family}, the newest {groom} in {town}.",
    "On the line from {town} is {given} {family}.",
    "Here with me is {given} {family}, a {fellow} who has lived in {town2} and {town}.",
    "Our storyteller tonight is {given} {family}, a {stepchild} of the village.",
    "Welcome to {given} {family}, {age} years young and still full of mischief.",
    "I've wanted to talk to {given} {family} for ages, and here {they} is.",
)
ROLE_LINES = (
    '"I {role}," {they} tells me.',
    '"These days I {role}," says {given}.',
    '"Most weeks I {role}," {honorific} {family} explains.',
    '"Honestly, I {role}, and I wouldn\'t change it," {they} says.',
    '{They} laughs: "I {role}, so sleep is a luxury."',
    '"Since I came to {town2}, I {role}," {they} says.',
    'In {their} own words: "I {role}."',
    '"My {partner} still can\'t believe I {role}," {given} says.',
    'Ask {them} about work and {they} shrugs: "I {role}."',
    '"For {n} years now I {role}," {they} says with a grin.',
    '"I {role}, which keeps me busy," {given} admits.',
    '"Right now I {role}," {they} adds.',
)
SETTING_LINES = (
    "{They} has come straight from {setting}.",
    "{given} joins us fresh from {setting}.",
    "{They} apologises for being late; {they} was stuck at {setting}.",
    "Only an hour ago {honorific} {family} was at {setting}.",
    "{They} heads back to {setting} first thing tomorrow.",
    '"I\'ve just left {setting}," {they} says.',
    "You catch {given} between {setting} and the school run.",
    "{Their} {partner} dropped {them} off on the way back from {setting}.",
)
KIT_LINES = (
    "{They} arrived with {kit} still on {them}.",
    "I notice {given} has brought {kit} along.",
    '"I\'m never without {kit}," {they} says.',
    "{They} sets down {kit} before we start.",
    "Out of {their} bag tumbles {kit}.",
    "{honorific} {family} jokes that {kit} is {their} lucky charm.",
)
PATH_LINES = (
    '"After {path}, I never wanted to do anything else," {they} says.',
    "{given} got here after {path}.",
    "{Their} road in was {path}.",
    '"It took {path} to get where I am," {they} says.',
    "{They} credits {path} for everything.",
    '"My {dad} pushed me into {path}," {they} recalls.',
)
HOME_LINES = (
    '"My {partner} says I talk too much," {they} jokes.',
    "{They} is a {dad} of {n} and a {grandpa} of one.",
    '"Being a {dad} is the best job there is," {given} says.',
    "{They} and {their} {partner} married in {town2} {n} years ago.",
    '"My {stepchild} keeps me young," {they} says.',
    "{They} grew up as one of {n} {siblings}.",
    '"My {kin} and I fought like cats as kids," {they} laughs.',
    "{Their} {date} is in the audience tonight.",
    '"I was a nervous {groom} on the big day," {given} admits.',
    '"Ask my {partner}, I\'m hopeless with money," {they} says.',
    "{They} still rings {their} own {dad} every Sunday.",
    '"I\'m a {town} {lad} at heart," {they} says.',
    "{They} became a {grandpa} last spring and has not stopped smiling.",
    '"My {siblings} call me the sensible one," {they} says.',
)
FREE_TIME_LINES = (
    "When {they} has a spare hour, {they} plays {sport}.",
    '"At weekends it\'s {sport} with the {lads}," {they} says.',
    "{They} has lately taken up {pastime}.",
    '"My secret is {pastime}," {given} confides.',
    "{They} plays {sport} every Thursday in {town2}.",
    "Off duty, {given} loves {pastime}.",
    '"Nothing beats {pastime} on a rainy day," {they} says.',
    "{They} and {their} {partner} are mad about {sport}.",
    '"I\'m rubbish at {sport}, but I love it," {they} admits.',
    "{Their} other passion is {pastime}.",
    "A keen player of {sport}, {they} trains twice a week.",
    "{They} spends Sunday mornings {pastime}.",
)
CUE_LINES = {"role": ROLE_LINES, "setting": SETTING_LINES, "kit": KIT_LINES, "path": PATH_LINES}
CUE_PHRASES = {"role": ROLES, "setting": SETTINGS, "kit": KITS, "path": PATHS}


def _fill(gender: int, rng: random.Random, given: list[str], family: list[str]) -> dict[str, str]:
    words = WORDS[gender]
    town, town2 = rng.sample(TOWNS, 2)
    slots = {key: value for key, value in words.items() if isinstance(value, str)}
    slots.update(
        given=rng.choice(given),
        family=rng.choice(family),
        honorific=rng.choice(words["honorific"]),
        town=town,
        town2=town2,
        age=str(rng.randint(27, 66)),
        n=rng.choice(("two", "three", "four", "five", "six")),
        sport=rng.choice(SPORTS),
        pastime=rng.choice(PASTIMES),
    )
    return with_capitals(slots)


def _profile(label: int, group: int, rng: random.Random, given, family) -> str:
    """A welcome, then 1 to 3 sentences in a random order: one or two profession cues of
    different kinds, and talk of home and free time."""
    slots = _fill(group, rng, given, family)
    for kind, phrases in CUE_PHRASES.items():
        slots[kind] = rng.choice(phrases[label])
    n_after = rng.randint(1, 3)
    kinds = rng.sample(list(CUE_LINES), rng.randint(1, min(2, n_after)))
    after = [rng.choice(CUE_LINES[kind]) for kind in kinds]
    after += rng.sample(HOME_LINES + FREE_TIME_LINES, n_after - len(after))
    rng.shuffle(after)
    return " ".join(line.format(**slots) for line in [rng.choice(WELCOMES), *after])


def generate_profiles(
    n: int,
    *,
    split: Literal["ambiguous", "balanced"],
    seed: int = 0,
    names: Literal["train", "test", "all"] = "all",
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """``n`` distinct profiles ``{"text", "label", "group"}``, shuffled; ``names``: the pool of
    given and family names (``train`` and ``test`` are disjoint); never a text of ``exclude``."""
    cells = split_cells(n, split)
    rng = random.Random(f"profiles|{split}|{seed}|{names}")
    given = {g: name_pool(GIVEN[g], names) for g in (MALE, FEMALE)}
    family = name_pool(FAMILY_NAMES, names)

    def make(cell: tuple[int, ...]) -> dict[str, Any]:
        label, group = cell
        return {"text": _profile(label, group, rng, given[group], family), "label": label,
                "group": group}  # fmt: skip

    return draw_distinct(cells, make, rng, exclude=exclude)


def generate_profile_concept(
    n: int, *, seed: int = 0, names: Literal["train", "test", "all"] = "all"
) -> list[dict[str, Any]]:
    """``n`` texts ``{"text", "group"}``, half each gender, with no profession: a welcome,
    mostly followed by a line about home or free time."""
    rng = random.Random(f"profile-concept|{seed}|{names}")
    given = {g: name_pool(GIVEN[g], names) for g in (MALE, FEMALE)}
    family = name_pool(FAMILY_NAMES, names)

    def make(key: tuple[int, ...]) -> dict[str, Any]:
        (group,) = key
        slots = _fill(group, rng, given[group], family)
        lines = [rng.choice(WELCOMES)]
        if rng.random() < 0.7:
            lines.append(rng.choice(HOME_LINES + FREE_TIME_LINES))
        return {"text": " ".join(line.format(**slots) for line in lines), "group": group}

    return draw_distinct(concept_groups(n), make, rng)


def write_profiles(folder: str | Path = DATA_DIR, **options: int) -> list[Path]:
    """Write ``train.jsonl`` (ambiguous, train names), ``test.jsonl`` (balanced, held-out
    names) and ``gender_concept.jsonl`` into ``folder``, each atomically; ``options``: ``seed``,
    ``n_train``, ``n_test``, ``n_concept`` of ``biography_sets.write_generated``."""
    return write_generated(GENERATOR, folder, **options)


def _phrasing() -> tuple[str, ...]:
    lists = [WELCOMES, *CUE_LINES.values(), HOME_LINES, FREE_TIME_LINES, SPORTS, PASTIMES]
    lists += [phrases[label] for phrases in CUE_PHRASES.values() for label in (PROFESSOR, NURSE)]
    return tuple(text for texts in lists for text in texts)


GENERATOR = Generator(
    generate=generate_profiles,
    concept=generate_profile_concept,
    data_dir=DATA_DIR,
    first_names={group: tuple(names) for group, names in GIVEN.items()},
    phrasing=_phrasing(),
)
