"""SHIFT reported on data it was not developed on: its choices (share of attribution, judge,
places) were tuned on the ``bios`` generator; this runs them on the independent ``profiles``
generator (probe trained on its ambiguous split, scored on its balanced split, judged on its
gender concept set) and prints the table with the share of the worst-group gap to the oracle
that SHIFT and the retrained probe close.

    python examples/shift_generalisation.py [--dictionaries starter/smollm2-135m]
        [--place resid.16] [--places resid.3,resid.9,...] [--generators profiles,bios]
        [--examples 0] [--diagnose] [--out shift_generalisation]

``--diagnose`` adds, per generator, how well the probe place's reconstruction and error term
carry gender before and after the ablation, and how many gender features every feature's
judge finds against the candidates' (``editing.shift_diagnostics``).
"""

import argparse
import json
from pathlib import Path

from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.editing.biography_sets import data_file, generator, read_labelled
from sparse_circuits.editing.shift import (
    ShiftConfig,
    candidates_markdown,
    gap_closed,
    results_markdown,
    run_shift,
)
from sparse_circuits.editing.shift_diagnostics import judge_every_feature, parts_readout
from sparse_circuits.files import write_text_atomic

STARTER = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dictionaries", default=str(STARTER))
parser.add_argument("--place", default="resid.16", help="where the probe reads")
parser.add_argument("--places", help="comma-separated dictionary places (default: all up to it)")
parser.add_argument("--generators", default="profiles", help="comma-separated, reported first")
parser.add_argument("--examples", type=int, default=0, help="per train/test split (0: all)")
parser.add_argument("--attribution-share", type=float, default=ShiftConfig.attribution_share)
parser.add_argument("--attribution-examples", type=int, default=256)
parser.add_argument("--diagnose", action="store_true", help="where gender lives after SHIFT")
parser.add_argument("--out", default="shift_generalisation")
args = parser.parse_args()

config = ShiftConfig(
    place=args.place,
    places=None if args.places is None else tuple(args.places.split(",")),
    attribution_share=args.attribution_share,
    attribution_examples=args.attribution_examples,
    label_tokens=0,  # the top contexts are for a person reading candidates.md, not the judge
)
model, adapter = load_model("smollm2-135m")
dictionaries = load_dictionary_set(args.dictionaries)
out = Path(args.out)
for name in args.generators.split(","):
    folder = generator(name).data_dir
    train, test = (read_labelled(data_file(split, folder)) for split in ("train", "test"))
    if args.examples:
        train, test = train[: args.examples], test[: args.examples]
    concept = read_labelled(data_file("gender_concept", folder), fields=("text", "group"))
    results = run_shift(
        model, adapter, dictionaries, train, test, config, concept=concept, progress=False
    )
    ablated = [tuple(ref.rsplit(":", 1)) for ref in results["methods"]["shift"]["ablated"]]
    ablated = [(place, int(feature)) for place, feature in ablated]
    if args.diagnose:
        results["diagnostics"] = {
            "parts_readout": parts_readout(model, adapter, dictionaries, test, config, ablated),
            "every_feature": judge_every_feature(
                model, adapter, dictionaries, concept, config, results["candidates"]
            ),
        }
    (out / name).mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / name / "results.json", json.dumps(results, indent=1))
    write_text_atomic(out / name / "candidates.md", candidates_markdown(results))
    print(f"\n## {name}: probe at {config.place}, {len(ablated)} features ablated\n")
    print(results_markdown(results))
    for method in ("shift", "shift_retrain"):
        print(f"gap closed by {method}: {gap_closed(results, method):.2f}")
    if args.diagnose:
        print(json.dumps(results["diagnostics"]["parts_readout"]))
        print(json.dumps(results["diagnostics"]["every_feature"]["total"]))
