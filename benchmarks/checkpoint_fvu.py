"""Held-out FVU of a training run's checkpoints: the curve of quality against tokens.

A run saves one resumable ``checkpoint.pt`` per place (``--checkpoint-every``), overwritten
each time; keep copies of it as the run goes (``<place>-<anything>.pt``) and this script scores
each copy and the finished dictionary on the same held-out contexts of the corpus (the split
``train`` never trains on), printing tokens seen and FVU per place:

    python benchmarks/checkpoint_fvu.py runs/w4096 runs/w4096.ckpts/*.pt --tokens 16384
"""

from __future__ import annotations

import argparse
import copy
import json
from collections import defaultdict
from pathlib import Path

import torch

from sparse_circuits.circuits.model.activations import collect_activations
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.training.train import corpus_contexts
from sparse_circuits.dictionaries import load_dictionary
from sparse_circuits.dictionaries.evaluation import reconstruction_metrics
from sparse_circuits.dictionaries.training.trainer import fold_scales
from sparse_circuits.files import write_text_atomic


def held_out_activations(lm, adapter, places, corpus, tokens, context_length=128):
    """``place -> (N, d)`` activations of the held-out contexts, first position left out."""
    contexts = corpus_contexts(lm.tokenizer, corpus, context_length=context_length).eval
    contexts = contexts[: max(1, tokens // context_length)]
    chunks = defaultdict(list)
    for start in range(0, len(contexts), 8):
        acts = collect_activations(lm, adapter, contexts[start : start + 8], places)
        for place, a_BTD in acts.items():
            chunks[place].append(a_BTD[:, 1:].flatten(0, 1).float())
    return {place: torch.cat(c) for place, c in chunks.items()}


def checkpoint_dictionary(final, path: Path):
    """The dictionary a checkpoint holds, its input scale folded back in, and its tokens."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    dictionary = copy.deepcopy(final).float()
    dictionary.load_state_dict(state["dictionary"])
    tokens = state["step"] * final.config.training["batch_size"]
    return fold_scales(dictionary, state["in_scale"], state["out_scale"]), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's output folder (one folder per place)")
    parser.add_argument("checkpoints", nargs="*", type=Path, help="copies <place>-*.pt")
    parser.add_argument("--tokens", type=int, default=16384, help="held-out tokens")
    parser.add_argument("--corpus", default="embedded")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lm, adapter = load_model(args.model, precision="float32")
    finals = {p.name: load_dictionary(p) for p in sorted(args.run.iterdir()) if p.is_dir()}
    acts = held_out_activations(lm, adapter, list(finals), args.corpus, args.tokens)
    curve = defaultdict(dict)
    for place, final in finals.items():
        tokens = final.config.training["tokens"]
        curve[place][tokens] = reconstruction_metrics(final.float(), [acts[place]])["fvu"]
    for path in args.checkpoints:
        place = path.name.split("-")[0]
        dictionary, tokens = checkpoint_dictionary(finals[place], path)
        curve[place][tokens] = reconstruction_metrics(dictionary, [acts[place]])["fvu"]
    for place, points in curve.items():
        line = "  ".join(f"{t:>9,}: {f:.3f}" for t, f in sorted(points.items()))
        print(f"{place:>9}  {line}")
    if args.json:
        write_text_atomic(args.json, json.dumps(curve, indent=1) + "\n")


if __name__ == "__main__":
    main()
