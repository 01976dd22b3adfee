"""The paper's setting: Pythia-70M-deduped with the published feature-circuits dictionaries
(32768 features per place). The model comes from the Hugging Face hub, so this needs a
network; offline it stops with one line.

    python examples/pythia_feature_circuits.py --dictionaries DIR [--prompts FILE]

DIR is a dictionary set: one folder per place (embed, attn.L, mlp.L, resid.L), each holding
the published ae.pt (dictionary_learning format).
"""

import argparse
import sys
from pathlib import Path

from sparse_circuits.circuits.data.agreement_sets import agreement_file
from sparse_circuits.circuits.discovery.attribution import AttributionConfig
from sparse_circuits.circuits.discovery.discover import (
    DiscoverConfig,
    discover_circuit,
    load_prompt_batches,
)
from sparse_circuits.circuits.discovery.graph import save_circuit
from sparse_circuits.circuits.model.loading import ModelLoadError, hub_reachable, load_model
from sparse_circuits.dictionaries import DictionaryError
from sparse_circuits.dictionaries.sets import load_dictionary_set

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="EleutherAI/pythia-70m-deduped")
parser.add_argument("--dictionaries", help="folder of the published dictionaries (required)")
parser.add_argument("--prompts", default=str(agreement_file("across_rc", "train")))
parser.add_argument("--out", default="pythia_circuit.json")
args = parser.parse_args()

# Checked first, so that offline the run ends with this one line.
if not Path(args.model).is_dir() and not hub_reachable():
    sys.exit(
        f"error: {args.model} is downloaded from the Hugging Face hub, which is not reachable "
        "(no network, or HF_HUB_OFFLINE is set)"
    )
if not args.dictionaries:
    sys.exit("error: pass --dictionaries, a folder of the published Pythia-70M dictionaries")
try:
    dictionaries = load_dictionary_set(args.dictionaries)
    model, adapter = load_model(args.model)
except (DictionaryError, ModelLoadError) as error:
    sys.exit(f"error: {error}")
batches = load_prompt_batches(model.tokenizer, args.prompts)
config = DiscoverConfig(AttributionConfig(method="ig"), node_threshold=0.1)
graph, _ = discover_circuit(model, adapter, dictionaries, batches, config)
save_circuit(graph, args.out)
print(f"{args.out}: {graph.number_of_nodes() - 1} nodes")
