"""SHIFT on the generated biographies: a profession probe that leans on gender, debiased by
ablating the features an automatic judge marks as gender features.

    python examples/debias_classifier.py [--place resid.16] [--examples 0] [--out shift_out]
"""

import argparse
import json
from pathlib import Path

from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.editing.bios import bios_file, read_labelled
from sparse_circuits.editing.shift import ShiftConfig, candidates_markdown, plot_results, run_shift
from sparse_circuits.files import write_text_atomic

STARTER = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--place", default="resid.16")
parser.add_argument("--dictionaries", default=str(STARTER))
parser.add_argument("--examples", type=int, default=0, help="per data split (0: all)")
parser.add_argument("--out", default="shift_out")
args = parser.parse_args()


def data(name, fields=("text", "label", "group"), *, whole=False):
    rows = read_labelled(bios_file(name), fields=fields)
    return rows[: args.examples] if args.examples and not whole else rows


model, adapter = load_model("smollm2-135m")
dictionaries = load_dictionary_set(args.dictionaries)
results = run_shift(
    model,
    adapter,
    dictionaries,
    data("train"),
    data("test"),
    ShiftConfig(place=args.place),
    # the judge's concept set stays whole: its test needs a few hundred texts to be sure
    concept=data("gender_concept", ("text", "group"), whole=True),
)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
write_text_atomic(out / "results.json", json.dumps(results, indent=1))
write_text_atomic(out / "candidates.md", candidates_markdown(results))
plot_results(results, out / "results.html")
print(f"candidates, each with its top activating contexts: {out / 'candidates.md'}")
for method, scores in results["methods"].items():
    print(
        f"{method:>15}: task {scores['task_acc']:.3f}  spurious {scores['spurious_acc']:.3f}  "
        f"worst group {scores['worst_group_acc']:.3f}"
    )
