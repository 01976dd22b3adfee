"""Compare dictionary sets by what the demo needs of them: small, faithful agreement circuits.

For each set (a folder with one dictionary per place) and each agreement template, node
effects are computed on the template's train split (the first ``--examples`` prompts of each
equal-length batch, as the demo does), the ``k`` largest nodes kept for each ``k`` of
``--top-k``, and each circuit scored on the template's test split (mean ablation, error nodes
outside the circuit ablated). Printed per set: the held-out FVU each dictionary recorded when
it was trained, then per template the faithfulness at each ``k`` and the error nodes' share of
the ``--share-at`` circuit's total |effect|. ``--json`` writes every figure to a file.

    python benchmarks/dictionary_sets.py starter/smollm2-135m runs/w4096 \\
        --places resid.3,resid.9,resid.15,resid.21,resid.27 --json comparison.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparse_circuits.circuits.data.agreement_sets import TEMPLATES, agreement_file
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.discover import load_prompt_batches
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.nodes import NodeEffects, NodeSelection, select_nodes
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.splice import cast_dictionaries
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.files import write_text_atomic


def selection_error_share(effects: NodeEffects, selection: NodeSelection) -> float:
    """The selected error nodes' share of the selected nodes' total |effect|."""
    feature = sum(float(effects.features[p].abs()[m].sum()) for p, m in selection.features.items())
    error = sum(float(effects.errors[p].abs()[m].sum()) for p, m in selection.errors.items())
    return error / (feature + error) if feature + error > 0 else 0.0


def compare_set(lm, adapter, folder: Path, places, prompts, args) -> dict:
    """``prompts``: template -> (train batches, test batches), shared by every set."""
    dictionaries = cast_dictionaries(
        load_dictionary_set(folder, places, device=args.device), adapter.dtype
    )
    fvu = {p: (d.config.metrics or {}).get("fvu") for p, d in dictionaries.items()}
    result = {"set": str(folder), "fvu": fvu, "templates": {}}
    for template, (train, test) in prompts.items():
        effects = node_effects(
            lm, adapter, dictionaries, train,
            config=AttributionConfig(method="attrib", batch_size=32), progress=False,
        )  # fmt: skip
        selections = [select_nodes(effects, top_k=k) for k in args.top_k]
        scores = score_selection(lm, adapter, dictionaries, test, selections, progress=False)
        share = selection_error_share(effects, select_nodes(effects, top_k=args.share_at))
        faithfulness = {k: s.faithfulness for k, s in zip(args.top_k, scores, strict=True)}
        result["templates"][template] = {"faithfulness": faithfulness, "error_share": share}
        line = "  ".join(f"{k}:{f:5.2f}" for k, f in faithfulness.items())
        print(f"{folder.name:>24} {template:>10}  {line}  err@{args.share_at} {share:.2f}")
    print(
        f"{folder.name:>24} FVU "
        + " ".join(f"{p}={v:.3f}" for p, v in fvu.items() if v is not None)
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path, help="dictionary set folders")
    parser.add_argument("--places", required=True, help="comma-separated places")
    parser.add_argument("--templates", default=",".join(TEMPLATES))
    parser.add_argument("--top-k", default="50,100,150,300", help="circuit sizes")
    parser.add_argument("--share-at", type=int, default=150, help="circuit size of error share")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.templates = args.templates.split(",")
    args.top_k = [int(k) for k in args.top_k.split(",")]
    lm, adapter = load_model(args.model, device=args.device, precision=args.precision)
    places = args.places.split(",")
    prompts = {}
    for template in args.templates:
        train = load_prompt_batches(lm.tokenizer, agreement_file(template, "train"))
        test = load_prompt_batches(lm.tokenizer, agreement_file(template, "test"))
        prompts[template] = ([batch.split(args.examples)[0] for batch in train], test)
    results = [compare_set(lm, adapter, folder, places, prompts, args) for folder in args.sets]
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
