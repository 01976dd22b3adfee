"""The behaviours pipeline on smollm2-135m and a corpus with planted behaviours.

python benchmarks/behaviours_planted.py --out DIR [--contexts 280] [--clusters 7,10,14]

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.arguments import positive  # noqa: E402

SYLLABLES = "zor blat quim fy drel kon snor vish plim bet grop tusk wemb lor fip nax".split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = (
    "January February March April May June July August September October November December"
).split()
PHRASES = [
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
]
PLACES = ["resid.3", "resid.9", "resid.15", "resid.21", "resid.27"]
"""The demo's five places (``spaced_layers(30, 5)``)."""


def _cycle(items: list[str], start: int, n: int, sep: str) -> str:
    return sep.join(items[(start + i) % len(items)] for i in range(n))


def _made_up_word(rng: random.Random) -> str:
    """A word of two random syllables: only copying its earlier occurrence predicts it (four
    of them repeat every 10-12 tokens, within a 16-token prefix)."""
    return "".join(rng.sample(SYLLABLES, 2))


def planted_documents(rng: random.Random, per_behaviour: int = 8) -> list[tuple[str, str]]:
    """``(behaviour, document)`` pairs; every low-loss position of a document belongs to its
    behaviour."""
    makers = {  # each document about 40 tokens, so each behaviour has about as many
        "counting": lambda: " ".join(str(n) for n in range(rng.randint(10, 80), 200)[:14]),
        "alphabet": lambda: _cycle([chr(c) for c in range(65, 91)], rng.randint(0, 25), 40, " "),
        "weekdays": lambda: _cycle(WEEKDAYS, rng.randint(0, 6), 20, ", "),
        "months": lambda: _cycle(MONTHS, rng.randint(0, 11), 20, "; "),
        "induction": lambda: " ".join([_made_up_word(rng) for _ in range(4)] * 4),
        "phrases": lambda: ". ".join(rng.sample(PHRASES, 7)) + ".",
        "code": lambda: "\n".join(
            f"for {v} in range({rng.randint(2, 99)}):\n    print({v})"
            for v in rng.sample(["i", "j", "k", "n", "x", "y", "item", "value", "index"], 3)
        ),
    }
    pairs = [(name, make()) for _ in range(per_behaviour) for name, make in makers.items()]
    rng.shuffle(pairs)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--contexts", type=positive(int), default=140)
    parser.add_argument("--clusters", default="7,10,14", help="K or K1,K2,... to sweep")
    parser.add_argument("--examples", type=positive(int), default=100)
    parser.add_argument("--prefix-length", type=positive(int), default=16)
    parser.add_argument("--describe", default="attribution")
    parser.add_argument("--label-windows", type=positive(int), default=64)
    args = parser.parse_args()

    from sparse_circuits.circuits.behaviours.cluster_circuit import ClusterCircuitConfig
    from sparse_circuits.circuits.behaviours.clustering import ClusterConfig, purity
    from sparse_circuits.circuits.behaviours.contexts import ContextConfig, Contexts
    from sparse_circuits.circuits.behaviours.pipeline import BehavioursConfig, run_behaviours
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.dictionaries.sets import load_dictionary_set
    from sparse_circuits.files import write_text_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    pairs = planted_documents(random.Random(0))
    corpus = write_text_atomic(args.out / "planted.txt", "\n\n".join(doc for _, doc in pairs))
    starter = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"
    config = BehavioursConfig(
        contexts=ContextConfig(
            n_contexts=args.contexts, max_loss=1.0, prefix_length=args.prefix_length
        ),
        describe=args.describe,
        clustering=ClusterConfig(clusters=tuple(int(k) for k in args.clusters.split(","))),
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
