"""Train a TopK SAE on one place of the default model over the embedded corpus, then
evaluate it spliced into the model.

    python examples/train_dictionary.py [--place resid.6] [--tokens 200000] [--out my_sae]
"""

import argparse
import json

from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.training.train import train_on_model
from sparse_circuits.dictionaries.training import TrainConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--place", default="resid.6")
parser.add_argument("--tokens", type=int, default=200_000)
parser.add_argument("--batch-size", type=int, default=2048)
parser.add_argument("--dict-size", type=int, default=2048)
parser.add_argument("--k", type=int, default=32)
parser.add_argument("--eval-tokens", type=int, default=2048, help="held-out tokens for the metrics")
parser.add_argument("--out", default="my_sae")
args = parser.parse_args()

model, adapter = load_model("smollm2-135m")
config = TrainConfig(
    arch="topk",
    d_sae=args.dict_size,
    k=args.k,
    batch_size=args.batch_size,
    steps=max(1, args.tokens // args.batch_size),
)
dictionary = train_on_model(
    model,
    adapter,
    args.place,
    config,
    model_name="smollm2-135m",
    out_dir=args.out,
    overwrite=True,
    eval_tokens=args.eval_tokens,
)[args.place]
print(json.dumps(dictionary.config.metrics, indent=1))
