"""The behaviours pipeline on smollm2-135m and a corpus with planted behaviours.

python benchmarks/behaviours_planted.py --out DIR [--vocabulary report|development]
    [--seed 0] [--contexts 280] [--clusters K1,K2,...] [--describe attribution|activations|gradients]

Writes ``DIR/planted.txt`` (seven behaviours the model predicts well, eight documents each: counting,
the alphabet, weekdays, months, induction over made-up words, set phrases, Python loops),
runs the pipeline (``sparse_circuits.circuits.behaviours``) with the starter dictionaries at
the demo's five places into ``DIR/site`` and prints, as JSON: the contexts found per
behaviour, the purity of the clustering (overall, and per behaviour the cluster holding most of
its contexts), the cluster count, the time of each stage, the time per circuit and circuits
per hour. A rerun resumes the site where it stopped.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.arguments import positive  # noqa: E402

WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = (
    "January February March April May June July August September October November December"
).split()
MONTHS_SHORT = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
UPPER = [chr(c) for c in range(65, 91)]
LOWER = [chr(c) for c in range(97, 123)]


class Vocabulary(NamedTuple):
    """The words and formats one planted corpus is written with. ``DEVELOPMENT`` and ``REPORT``
    share no syllable, phrase or code template, and write each behaviour in a format of its own
    (case, separators, abbreviations), so a choice made on one corpus is scored on text it
    never saw. Within a corpus no two behaviours share a separator: a comma after weekdays and
    after letters would plant one behaviour (the list separator), not two."""

    syllables: list[str]
    phrases: list[str]
    letters: list[str]
    letter_separators: list[str]
    weekday_separator: str
    months: list[str]
    month_separator: str
    number_separator: str
    first_numbers: tuple[int, int]
    numbers: int
    """Numbers counted per document (about 40 tokens: SmolLM2 splits numbers into digits)."""
    loop: str
    """A Python block with ``{v}`` (a variable) and ``{n}`` (a number) to fill."""
    variables: list[str]


DEVELOPMENT = Vocabulary(
    syllables="zor blat quim fy drel kon snor vish plim bet grop tusk wemb lor fip nax".split(),
    phrases=[
        "Once upon a time",
        "the United States of America",
        "ladies and gentlemen",
        "as a matter of fact",
        "New York City",
        "the Prime Minister of the United Kingdom",
        "at the end of the day",
        "on the other hand",
        "in the middle of the night",
        "Happy birthday to you",
    ],
    letters=UPPER,
    letter_separators=[" ", " : "],
    weekday_separator=", ",
    months=MONTHS,
    month_separator="; ",
    number_separator=" ",
    first_numbers=(10, 80),
    numbers=14,
    loop="for {v} in range({n}):\n    print({v})",
    variables=["i", "j", "k", "n", "x", "y", "item", "value", "index"],
)

REPORT = Vocabulary(
    syllables="mub tev rask olp gint huz yarp dob cleft sabe wun trog pez imble kav rud".split(),
    phrases=[
        "the Statue of Liberty",
        "Merry Christmas and a Happy New Year",
        "the Great Wall of China",
        "a piece of cake",
        "the Declaration of Independence",
        "Rome was not built in a day",
        "the Universal Declaration of Human Rights",
        "better late than never",
        "the Golden Gate Bridge",
        "actions speak louder than words",
    ],
    letters=LOWER,
    letter_separators=[" ", " | "],
    weekday_separator=" / ",
    months=MONTHS_SHORT,
    month_separator=", ",
    number_separator="; ",
    first_numbers=(300, 700),
    numbers=8,
    loop="while {v} < {n}:\n    {v} += 1",
    variables=["a", "b", "c", "m", "t", "count", "total", "step", "size"],
)

VOCABULARIES = {"development": DEVELOPMENT, "report": REPORT}
PLACES = ["resid.3", "resid.9", "resid.15", "resid.21", "resid.27"]
"""The demo's five places (``spaced_layers(30, 5)``)."""


def _cycle(items: list[str], start: int, n: int, sep: str) -> str:
    return sep.join(items[(start + i) % len(items)] for i in range(n))


def _made_up_word(rng: random.Random, syllables: list[str]) -> str:
    """A word of two random syllables: only copying its earlier occurrence predicts it (three
    of them repeat every 6-12 tokens, within a 16-token prefix)."""
    return "".join(rng.sample(syllables, 2))


def planted_documents(
    rng: random.Random, vocabulary: Vocabulary = DEVELOPMENT, per_behaviour: int = 8
) -> list[tuple[str, str]]:
    """``(behaviour, document)`` pairs; every low-loss position of a document belongs to its
    behaviour. The letters' case is fixed by the vocabulary and their separator drawn per
    document, so the alphabet's 16-token windows are not the same few 26 again and again."""
    v = vocabulary
    low, high = v.first_numbers
    makers = {  # each document about 40 tokens, so each behaviour has about as many
        "counting": lambda: v.number_separator.join(
            str(n) for n in range(rng.randint(low, high), high + 100)[: v.numbers]
        ),
        "alphabet": lambda: _cycle(
            v.letters, rng.randint(0, 25), 30, rng.choice(v.letter_separators)
        ),
        "weekdays": lambda: _cycle(WEEKDAYS, rng.randint(0, 6), 20, v.weekday_separator),
        "months": lambda: _cycle(v.months, rng.randint(0, 11), 20, v.month_separator),
        "induction": lambda: " ".join([_made_up_word(rng, v.syllables) for _ in range(3)] * 5),
        "phrases": lambda: ". ".join(rng.sample(v.phrases, 7)) + ".",
        "code": lambda: "\n".join(
            v.loop.format(v=name, n=rng.randint(2, 99)) for name in rng.sample(v.variables, 3)
        ),
    }
    pairs = [(name, make()) for _ in range(per_behaviour) for name, make in makers.items()]
    rng.shuffle(pairs)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--contexts", type=positive(int), default=280)
    parser.add_argument(
        "--clusters", default="",
        help="K or K1,K2,... to sweep (default: the pipeline's sweep, mean sizes 80 to 10)",
    )  # fmt: skip
    parser.add_argument("--examples", type=positive(int), default=100)
    parser.add_argument("--prefix-length", type=positive(int), default=16)
    parser.add_argument("--describe", default="attribution")
    parser.add_argument("--label-windows", type=positive(int), default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the planted documents")
    parser.add_argument(
        "--vocabulary", choices=list(VOCABULARIES), default="report",
        help="which planted corpus: develop on one, report on the other (default: report)",
    )  # fmt: skip
    args = parser.parse_args()

    from sparse_circuits.circuits.behaviours.cluster_circuit import ClusterCircuitConfig
    from sparse_circuits.circuits.behaviours.clustering import ClusterConfig, purity
    from sparse_circuits.circuits.behaviours.contexts import ContextConfig, Contexts
    from sparse_circuits.circuits.behaviours.pipeline import BehavioursConfig, run_behaviours
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.dictionaries.sets import load_dictionary_set
    from sparse_circuits.files import write_text_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    pairs = planted_documents(random.Random(args.seed), VOCABULARIES[args.vocabulary])
    corpus = write_text_atomic(args.out / "planted.txt", "\n\n".join(doc for _, doc in pairs))
    starter = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"
    config = BehavioursConfig(
        contexts=ContextConfig(
            n_contexts=args.contexts, max_loss=1.0, prefix_length=args.prefix_length
        ),
        describe=args.describe,
        clustering=ClusterConfig(clusters=tuple(int(k) for k in args.clusters.split(",") if k)),
        circuits=ClusterCircuitConfig(examples=args.examples, top_features=8),
        corpus=str(corpus),
        label_windows=args.label_windows,
    )
    started = time.perf_counter()
    model, adapter = load_model("smollm2-135m")
    dictionaries = load_dictionary_set(starter, PLACES)
    loading = time.perf_counter() - started
    run = run_behaviours(
        model, adapter, dictionaries, args.out / "site", config,
        settings={"model": "smollm2-135m", "dictionaries": str(starter), "corpus": str(corpus)},
    )  # fmt: skip
    contexts = Contexts.load(args.out / "site" / "contexts.safetensors")
    behaviours = [pairs[d][0] for d in contexts.documents_N.tolist()]
    clustering = json.loads((args.out / "site" / "clustering.json").read_text())
    score = purity(clustering["labels"], behaviours)
    timing = json.loads((args.out / "site" / "run.json").read_text())
    per_circuit = timing["seconds_per_circuit"]
    report = {
        "vocabulary": args.vocabulary,
        "seed": args.seed,
        "contexts": len(contexts),
        "contexts_per_behaviour": {b: behaviours.count(b) for b in sorted(set(behaviours))},
        "mean_loss": float(contexts.losses_N.mean()),
        "clusters": run.n_clusters,
        "sweep": clustering["sweep"],
        "purity": score.overall,
        "per_behaviour": score.per_behaviour,
        "seconds": {"loading": round(loading, 1), **run.seconds},
        "seconds_per_circuit": round(per_circuit, 1),
        "circuits_per_hour": round(3600 / per_circuit, 1),
    }
    print(json.dumps(report, indent=1))
    write_text_atomic(args.out / "report.json", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
