"""Discover the subject-verb agreement circuit of the default model with the starter
dictionaries, and check it on the held-out split.

    python examples/discover_circuit.py [--template across_rc] [--examples 64] [--places resid.*]
"""

import argparse
import fnmatch
from pathlib import Path

from sparse_circuits.circuits.data.agreement_sets import agreement_file
from sparse_circuits.circuits.discovery.attribution import AttributionConfig
from sparse_circuits.circuits.discovery.discover import (
    DiscoverConfig,
    discover_circuit,
    load_prompt_batches,
)
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.graph import save_circuit
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.dictionaries.sets import list_dictionary_set, load_dictionary_set

STARTER = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--template", default="across_rc")
parser.add_argument("--dictionaries", default=str(STARTER))
parser.add_argument("--places", default="resid.*", help="shell pattern over the set's places")
parser.add_argument("--examples", type=int, default=64, help="prompts used (0: all)")
parser.add_argument("--method", default="ig")
parser.add_argument("--node-threshold", type=float, default=0.1)
parser.add_argument("--out", default="circuit.json")
args = parser.parse_args()

model, adapter = load_model("smollm2-135m")
places = fnmatch.filter(list_dictionary_set(args.dictionaries), args.places)
dictionaries = load_dictionary_set(args.dictionaries, places)


def prompts(split):
    batches = load_prompt_batches(model.tokenizer, agreement_file(args.template, split))
    return [b.split(args.examples)[0] for b in batches] if args.examples else batches


config = DiscoverConfig(AttributionConfig(method=args.method), node_threshold=args.node_threshold)
graph, effects = discover_circuit(model, adapter, dictionaries, prompts("train"), config)
save_circuit(graph, args.out)
(score,) = score_selection(
    model,
    adapter,
    dictionaries,
    prompts("test"),
    [select_nodes(effects, threshold=args.node_threshold)],
)
print(f"{args.out}: {score.n_nodes} nodes, {graph.number_of_edges()} edges")
print(f"held-out faithfulness {score.faithfulness:.3f}, completeness {score.completeness:.3f}")
